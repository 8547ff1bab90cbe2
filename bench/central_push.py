#!/usr/bin/env python3
"""Pushes SPANS GenAI spans to a central's POST /v1/push from SIDECARS simulated
sidecars at once (threads, keep-alive connections), in v2 envelopes of BATCH spans,
gzipped, as openclaw-trace's push sends them. Bodies are made before the clock starts,
so the figure is the central's, not this script's. A batch answered 429 or 503 is sent
again after its Retry-After (at most 5 min in all, then it counts as an error).
UPDATES (0 to 1): after each batch, that share of its spans is sent again as updates
(`"update": true`, as a sidecar sends a span that pieces were merged into), carrying a
response model and cache tokens the first copy lacked: the central's merge path.
Prints: spans and updates sent, pushes, retries, errors, seconds from the first push to
the last accepted.
Usage: central_push.py URL TOKEN SPANS SIDECARS BATCH [UPDATES]"""

import gzip
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

url, token, spans, sidecars, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
updates = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
target = urllib.parse.urlparse(url)
now_ns = time.time_ns() - 3_600 * 10**9

MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4o")]
WORDS = "plan search read summarise compare draft check send retry verify".split()


def span(sidecar, i):
    provider, model = MODELS[i % len(MODELS)]
    start = now_ns + i * 1_000_000
    text = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(30))
    return {
        "type": "span",
        "id": f"{sidecar}-{i}",
        "data": {
            "trace_id": f"{sidecar:08x}{i // 4:024x}",
            "span_id": f"{i:016x}",
            "kind": "llm_call",
            "name": f"chat {model}",
            "start_ns": start,
            "end_ns": start + 800_000_000,
            "status": "error" if i % 50 == 0 else "ok",
            "provider": provider,
            "request_model": model,
            "input_tokens": 500 + i % 300,
            "output_tokens": 40 + i % 60,
            "agent_id": f"agent-{i % 5}",
            "session_id": f"s-{sidecar}-{i // 40}",
            "input_text": f"{text} #{i}",
            "output_text": f"done {i}",
            "latency_ms": 800,
        },
    }


def updated(sidecar, i):
    """Span i sent again, merged with a later piece: what it lacked is filled in."""
    s = span(sidecar, i)
    s["update"] = True
    s["id"] = f"{sidecar}-{i}-u"
    model = s["data"]["request_model"]
    s["data"].update({"response_model": f"{model}-2025", "cache_read_tokens": 100,
                      "end_ns": s["data"]["end_ns"] + 50_000_000})
    return s


def envelope(sidecar, records):
    env = {
        "schema_version": 2,
        "source": {"service": "openclaw-trace", "version": "bench",
                   "instance": {"id": f"side-{sidecar:02d}"}, "region": "ams"},
        "records": records,
    }
    return gzip.compress(json.dumps(env).encode(), 1)


updates_sent = [0]


def bodies_of(sidecar, n):
    out = []
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        out.append(envelope(sidecar, [span(sidecar, i) for i in range(lo, hi)]))
        again = int((hi - lo) * updates)
        if again:
            out.append(envelope(sidecar, [updated(sidecar, i) for i in range(lo, lo + again)]))
            updates_sent[0] += again
    return out


per = spans // sidecars
work = [bodies_of(s, per) for s in range(sidecars)]
counts = {"pushes": 0, "retries": 0, "errors": 0}
lock = threading.Lock()
last_ok = [0.0]


def run(bodies):
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    for body in bodies:
        deadline = time.time() + 300
        while True:
            try:
                conn.request("POST", "/v1/push", body, {
                    "Content-Type": "application/json", "Content-Encoding": "gzip",
                    "Authorization": f"Bearer {token}"})
                r = conn.getresponse()
                r.read()
                status, wait = r.status, float(r.getheader("Retry-After") or 0.2)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                status, wait = 0, 0.5
            if status == 202:
                with lock:
                    counts["pushes"] += 1
                    last_ok[0] = time.time()
                break
            if time.time() > deadline:
                with lock:
                    counts["errors"] += 1
                break
            with lock:
                counts["retries"] += 1
            time.sleep(min(wait, 1.0))


threads = [threading.Thread(target=run, args=(b,)) for b in work]
started = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"spans_sent: {per * sidecars}")
print(f"updates_sent: {updates_sent[0]}")
for k, v in counts.items():
    print(f"{k}: {v}")
print(f"push_seconds: {last_ok[0] - started:.2f}")
print(f"push_started_at: {started:.3f}")
sys.stdout.flush()
os._exit(0)
