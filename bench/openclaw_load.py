#!/usr/bin/env python3
"""A realistic OpenClaw load for bench/density.sh: the plugin events of one real turn
with a tool call (OpenClaw 2026.9.6, ../shared/samples/openclaw/bridge_events.jsonl),
replayed as TURNS distinct turns: fresh trace, span, run, session and call ids, times
moved to now, and a distinct prompt, tool result and answer made of words (about 200
characters each) in every turn. Posted to POST /v1/openclaw/events in batches over
CONNECTIONS keep-alive connections; 429/503 are retried after Retry-After (or after
--retry-wait seconds: bench/density.sh waits 200 ms, so that the writer, not the client's
one-second waits, sets the rate it measures).

  python3 bench/openclaw_load.py --url http://127.0.0.1:9090 --turns 20000

Prints one JSON line: turns, events, requests, retries, errors, seconds.
"""
import argparse
import http.client
import json
import random
import re
import threading
import time
import urllib.parse
import uuid

SAMPLE = "../shared/samples/openclaw/bridge_events.jsonl"
TOOL_RUN = "chatcmpl_e830117c-fbda-4d66-bcfc-c6685a8448c1"
WORDS = (
    "agent budget cache commit config context deploy error fetch file gateway heartbeat "
    "index invoice ledger model memory note order parse patch plan price queue reply "
    "report request result schedule search session skill source span status summary "
    "task ticket token tool trace update upload user value window worker write"
).split()

# Ids inside other words too (`chatcmpl_<uuid>`): bounded by what hex cannot touch.
ID_PATTERNS = [
    re.compile(r"(?<![0-9a-f-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f])"),
    re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"),
    re.compile(r"(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])"),
    re.compile(r"\bcall_[0-9a-f]{8}\b"),
    re.compile(r"\bchatcmpl-[0-9a-f]{12}\b"),
]
MS_TIME = re.compile(r"\b1[78]\d{11}\b")


def words(rng, n_chars):
    out = []
    size = 0
    while size < n_chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def template(sample_path):
    """The tool-call turn's plugin events (hook and trusted diagnostic), each once."""
    seen = set()
    events = []
    for line in open(sample_path):
        row = json.loads(line)
        if not row["kind"].startswith(("hook:", "tdiag:")):
            continue
        text = json.dumps(row, sort_keys=True)
        key = row["kind"] + json.dumps(row["event"], sort_keys=True)
        if TOOL_RUN not in text and not (
            row["kind"] == "tdiag:model.usage" and "590290b6c4e5f2264479c9bd422f332c" in text
        ):
            continue
        if key in seen:
            continue
        seen.add(key)
        events.append(row)
    text = json.dumps(events)
    ids = set()
    for p in ID_PATTERNS:
        ids.update(p.findall(text))
    times = [int(t) for t in MS_TIME.findall(text)]
    sessions = set(re.findall(r'"sessionId": "([^"]+)"', text))
    sessions |= set(re.findall(r'"sessionKey": "agent:[^:"]+:[^:"]+:([^"]+)"', text))
    return text, sorted(ids, key=len, reverse=True), min(times), sessions


def fresh_like(rng, old):
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", old):
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if old.startswith("call_"):
        return "call_%08x" % rng.getrandbits(32)
    if old.startswith("chatcmpl-"):
        return "chatcmpl-%012x" % rng.getrandbits(48)
    return "%0*x" % (len(old), rng.getrandbits(4 * len(old)))


def turn(text, ids, base_ms, rng, now_ms, session_ids):
    """One distinct turn: the template with fresh ids (its session's given in
    `session_ids`), times moved, texts replaced."""
    mapping = {old: fresh_like(rng, old) for old in ids}
    mapping.update(session_ids)
    pattern = re.compile("|".join(re.escape(i) for i in ids))
    out = pattern.sub(lambda m: mapping[m.group(0)], text)
    shift = now_ms - base_ms
    out = MS_TIME.sub(lambda m: str(int(m.group(0)) + shift), out)
    prompt = words(rng, 200)
    answer = words(rng, 200)
    listing = "\\n".join('\\"%s.md\\"' % rng.choice(WORDS) for _ in range(20))
    out = out.replace("Please use a TOOL to list files", prompt)
    out = out.replace("Hello from the fake LLM. The answer is 42.", answer)
    out = re.sub(
        r'\\"\.git/\\"\\n\\"AGENTS\.md\\"\\n\\"BOOTSTRAP\.md\\"\\n\\"IDENTITY\.md\\"\\n\\"SOUL\.md\\"\\n\\"USER\.md\\"',
        lambda _m: listing,
        out,
    )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--turns", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=20, help="turns per request")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--sample", default=SAMPLE)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retry-wait", type=float, default=None,
                    help="seconds to wait after a 429/503 (default: its Retry-After); "
                         "a throughput benchmark keeps the queue full with a short wait")
    ap.add_argument("--session-turns", type=int, default=10,
                    help="turns per session (a conversation goes on)")
    a = ap.parse_args()
    text, ids, base_ms, sessions = template(a.sample)
    u = urllib.parse.urlparse(a.url)
    lock = threading.Lock()
    state = {"next": 0, "events": 0, "requests": 0, "retries": 0, "errors": 0}

    def worker(k):
        rng = random.Random(a.seed * 1000 + k)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        done = 0
        session_ids = {}
        while True:
            with lock:
                first = state["next"]
                if first >= a.turns:
                    break
                n = min(a.batch, a.turns - first)
                state["next"] += n
            now_ms = int(time.time() * 1000)
            parts = []
            for _ in range(n):
                if done % a.session_turns == 0:
                    session_ids = {old: fresh_like(rng, old) for old in sessions}
                done += 1
                parts.append(turn(text, ids, base_ms, rng, now_ms, session_ids)[1:-1])
            events = ",".join(parts)
            body = ('{"plugin":{"name":"density-bench"},"events":[%s]}' % events).encode()
            # Until accepted, for five minutes at most (an error after that).
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    conn.request("POST", "/v1/openclaw/events", body,
                                 {"content-type": "application/json"})
                    r = conn.getresponse()
                    answer = r.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                    with lock:
                        state["retries"] += 1
                    time.sleep(0.2)
                    continue
                if r.status in (429, 503):
                    with lock:
                        state["retries"] += 1
                    time.sleep(a.retry_wait if a.retry_wait is not None
                               else float(r.getheader("retry-after") or 1))
                    continue
                with lock:
                    state["requests"] += 1
                    if r.status == 202:
                        state["events"] += json.loads(answer).get("accepted", 0)
                    else:
                        state["errors"] += 1
                break
            else:
                with lock:
                    state["errors"] += 1

    start = time.time()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({
        "turns": a.turns, "events_accepted": state["events"], "requests": state["requests"],
        "retries": state["retries"], "errors": state["errors"],
        "seconds": round(time.time() - start, 2),
    }))


if __name__ == "__main__":
    main()
