// Shared by the dashboard's browser tests and bench/dashboard.sh: the real binary on
// 127.0.0.1:0 with a temporary database, Debian's chromium driven by playwright-core
// (installed by scripts/setup-browser.sh into .cache/browser), and data fed through the
// native API, OTLP (the Python OpenTelemetry SDK) and the OpenClaw endpoint.

import { spawn, execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.OCT_BIN || join(ROOT, 'target', 'debug', 'openclaw-trace');

const require = createRequire(join(ROOT, '.cache', 'browser', 'package.json'));
export const { chromium } = require('playwright-core');

export const hex = (bytes) => randomBytes(bytes).toString('hex');

/** Starts the daemon; resolves once its log says where it listens. */
export async function startDaemon(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'oct-dash-'));
  const child = spawn(BIN, [], {
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      OCT_PORT: '0',
      OCT_DB_PATH: join(dir, 'trace.db'),
      OCT_LOG_FORMAT: 'json',
      OCT_HOST_DISABLE: 'all',
      OCT_OTLP_HTTP_ADDR: '127.0.0.1:0',
      OCT_OTLP_GRPC_ADDR: '127.0.0.1:0',
      OCT_LOG_PATH: 'off',
      OCT_OPENCLAW_STATE_DIR: 'off',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const logs = [];
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start: ${logs.join('\n')}`)), 20_000);
    createInterface({ input: child.stderr }).on('line', (line) => {
      logs.push(line);
      try {
        const v = JSON.parse(line);
        if (v.message === 'listening' && v.addr) {
          clearTimeout(timer);
          resolve(v.addr);
        }
      } catch {
        /* not JSON */
      }
    });
    child.on('exit', (code) => reject(new Error(`daemon exited ${code}: ${logs.join('\n')}`)));
  });
  const base = `http://${addr}`;
  return {
    base,
    dir,
    logs,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, 15_000);
        child.on('exit', () => {
          clearTimeout(t);
          r();
        });
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function post(base, path, body, { token, type = 'application/json' } = {}) {
  const headers = { 'content-type': type };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(base + path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  if (r.status !== 202 && r.status !== 200) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

export async function getJson(base, path, token) {
  const r = await fetch(base + path, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  return { status: r.status, body: await r.json() };
}

/** Polls fn until it returns a truthy value (or throws after timeoutMs). */
export async function until(fn, timeoutMs = 10_000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The OpenClaw plugin fixture with its times moved so it ends a minute ago. */
export function openclawFixture() {
  const lines = readFileSync(join(ROOT, 'tests/fixtures/openclaw/bridge_events.jsonl'), 'utf8').split('\n').filter(Boolean);
  const isMs = (v) => typeof v === 'number' && v > 1.7e12 && v < 1.9e12;
  let max = 0;
  const walk = (v, fn) => {
    if (Array.isArray(v)) return v.map((x) => walk(x, fn));
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, fn)]));
    return fn(v);
  };
  const parsed = lines.map((l) => JSON.parse(l));
  walk(parsed, (v) => {
    if (isMs(v)) max = Math.max(max, v);
    return v;
  });
  const delta = Date.now() - 60_000 - max;
  return parsed.map((e) => JSON.stringify(walk(e, (v) => (isMs(v) ? Math.round(v + delta) : v)))).join('\n') + '\n';
}

/** Runs tests/otlp_clients/sdk_export.py against the daemon; its JSON (ids sent). */
export function runPythonSdk(base) {
  const py = join(ROOT, '.cache/venv-otel/bin/python');
  return new Promise((resolve, reject) => {
    execFile(py, [join(ROOT, 'tests/otlp_clients/sdk_export.py')], {
      env: { PATH: process.env.PATH, OTEL_EXPORTER_OTLP_ENDPOINT: base, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' },
      timeout: 90_000,
    }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
  });
}

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), 'oct-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** A page that records every console error, page error, failed request, dialog and HTTP error. */
export async function watchedPage(context) {
  const page = await context.newPage();
  const problems = [];
  const dialogs = [];
  const requests = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    // A stream or fetch the page itself aborted on leaving a view is not a failure.
    if (!why.includes('ERR_ABORTED')) problems.push(`request failed: ${r.url()} ${why}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers().authorization }));
  page.on('dialog', async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  return { page, problems, dialogs, requests };
}

export function writeJson(path, v) {
  writeFileSync(path, JSON.stringify(v, null, 2));
}
