// The dashboard's number and time formats (web/lib/format.js has no DOM: plain Node runs it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as f from '../../web/lib/format.js';

test('costs keep four significant digits below a dollar and never show a fake zero', () => {
  assert.equal(f.cost(null), '—');
  assert.equal(f.cost(undefined), '—');
  assert.equal(f.cost(0), '$0');
  assert.equal(f.cost(0.0006), '$0.0006');
  assert.equal(f.cost(0.0125), '$0.0125');
  assert.equal(f.cost(0.033080001), '$0.03308');
  assert.equal(f.cost(0.0000012), '$0.0000012');
  assert.equal(f.cost(1.23456), '$1.235');
  assert.equal(f.cost(123.456), '$123.46');
});

test('durations, tokens, bytes and changes read as people write them', () => {
  assert.equal(f.duration(0), '0');
  assert.equal(f.duration(0.5), '500 µs');
  assert.equal(f.duration(840), '840 ms');
  assert.equal(f.duration(4200), '4.20 s');
  assert.equal(f.duration(89_000), '1 m 29 s');
  assert.equal(f.tokens(1200), '1,200');
  assert.equal(f.tokens(109_700), '109.7k');
  assert.equal(f.tokens(2_500_000), '2.50M');
  assert.equal(f.bytes(1536), '1.5 KiB');
  assert.equal(f.delta(110, 100), '+10%');
  assert.equal(f.delta(95, 100), '−5.0%');
  assert.equal(f.delta(5, 0), 'new');
  assert.equal(f.delta(0, 0), '±0%');
});

test('ranges resolve from the URL parameters', () => {
  const now = 1_800_000_000_000;
  assert.deepEqual(f.resolveRange({}, '24h', now), [now - 86_400_000, now]);
  assert.deepEqual(f.resolveRange({ range: '7d' }, '24h', now), [now - 604_800_000, now]);
  assert.deepEqual(f.resolveRange({ range: 'all' }, '24h', now), [null, null]);
  assert.deepEqual(f.resolveRange({ range: 'custom', from: '1000', to: '2000' }, '24h', now), [1000, 2000]);
  assert.deepEqual(f.resolveRange({ range: 'bogus' }, '1h', now), [now - 3_600_000, now]);
});
