#!/usr/bin/env python3
"""bench/soak.sh's helpers (standard library only).

  soak_load.py receiver PORT SHIPPED_FILE      push receiver: every third request gets 500
  soak_load.py load PORT OTLP_PORT SECS ACKED  the mixed load, for SECS seconds
  soak_load.py fds PID SECS                    descriptors over SECS s: files_min,files_max,sockets_min,sockets_max
  soak_load.py report CSV ACKED SHIPPED DB HEALTH_JSON
"""
import http.client
import json
import os
import random
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def receiver(port, shipped_path):
    lock = threading.Lock()
    state = {"n": 0}
    out = open(shipped_path, "a")

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                state["n"] += 1
                fail = state["n"] % 3 == 0
            if fail:
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            try:
                ids = [r.get("id") for r in json.loads(body).get("records", [])]
            except Exception:
                ids = []
            with lock:
                out.write("".join(f"{i}\n" for i in ids if i))
                out.flush()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()


class Client:
    """One keep-alive connection; retries 429/503 after Retry-After with the same body."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.errors = 0
        self.refused = 0

    def request(self, method, path, body=None, ctype="application/json"):
        for _ in range(30):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                headers = {"Content-Type": ctype} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                self.conn = None
                time.sleep(1)
                continue
            if r.status in (429, 503):
                self.refused += 1
                time.sleep(float(r.getheader("Retry-After", "1")))
                continue
            return r.status, data
        return 0, b""


def every(period, stop, fn):
    nxt = time.monotonic()
    while not stop.is_set():
        fn()
        nxt += period
        stop.wait(max(0.0, nxt - time.monotonic()))


def load(port, otlp_port, secs, acked_path):
    stop = threading.Event()
    lock = threading.Lock()
    acked = open(acked_path, "w")
    counts = {"native": 0, "otlp": 0, "openclaw": 0, "queries": 0, "tail_items": 0,
              "tail_reconnects": 0, "bad": 0}
    pad = "lorem ipsum " * 40
    seq = {"n": 0}

    def next_ids(n):
        with lock:
            base = seq["n"]
            seq["n"] += n
        tid = "%032x" % (random.getrandbits(64) << 64 | base)
        return tid, ["%016x" % (base + i + 1) for i in range(n)]

    def ack(kind, keys):
        with lock:
            counts[kind] += len(keys)
            acked.write("".join(k + "\n" for k in keys))
            acked.flush()

    native = Client(port)

    def native_batch():
        tid, sids = next_ids(10)
        calls = [{"provider": "openai", "model": "gpt-4o", "trace_id": tid, "span_id": s,
                  "input_text": pad, "output_text": pad, "prompt_tokens": 120,
                  "completion_tokens": 80, "latency_ms": 900} for s in sids]
        st, data = native.request("POST", "/v1/traces", json.dumps(calls))
        if st == 202:
            ack("native", [f"{tid}-{s}" for s in sids])
        else:
            counts["bad"] += 1

    otlp = Client(otlp_port)

    def otlp_export():
        tid, sids = next_ids(10)
        now = time.time_ns()
        spans = [{"traceId": tid, "spanId": s, "name": f"execute_tool t{i}", "kind": 1,
                  "startTimeUnixNano": str(now - 2_000_000_000), "endTimeUnixNano": str(now),
                  "attributes": [
                      {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                      {"key": "gen_ai.tool.name", "value": {"stringValue": f"t{i}"}},
                      {"key": "q", "value": {"stringValue": pad}}]}
                 for i, s in enumerate(sids)]
        doc = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "soak"}}]},
            "scopeSpans": [{"scope": {"name": "soak"}, "spans": spans}]}]}
        st, data = otlp.request("POST", "/v1/traces", json.dumps(doc))
        if st == 200 and b"rejected" not in data:
            ack("otlp", [f"{tid}-{s}" for s in sids])
        else:
            counts["bad"] += 1

    oc = Client(port)

    def openclaw():
        with lock:
            seq["n"] += 1
            n = seq["n"]
        now = int(time.time() * 1000)
        ctx = {"toolName": "ls", "agentId": "main", "sessionKey": "agent:main:main",
               "sessionId": "soak-session", "runId": f"run-{n}", "toolCallId": f"call-{n}"}
        ev = {"kind": "hook:after_tool_call", "ts": now - 100,
              "event": {"toolName": "ls", "params": {"path": "/tmp"}, "runId": f"run-{n}",
                        "toolCallId": f"call-{n}", "result": "a\nb", "durationMs": 12},
              "ctx": ctx}
        st, data = oc.request("POST", "/v1/openclaw/events", json.dumps(ev) + "\n",
                              "application/x-ndjson")
        if st == 202:
            with lock:
                counts["openclaw"] += json.loads(data).get("accepted", 0)
        else:
            counts["bad"] += 1

    q = Client(port)
    paths = ["/v1/traces?limit=50", "/v1/overview", "/v1/errors?limit=20", "/v1/sessions",
             "/metrics", "/health", "/v1/events?limit=20"]

    def queries():
        for p in paths:
            st, _ = q.request("GET", p)
            if st != 200:
                counts["bad"] += 1
        counts["queries"] += len(paths)

    def tail():
        while not stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("GET", "/v1/stream")
                r = c.getresponse()
                while not stop.is_set():
                    line = r.fp.readline()
                    if not line:
                        break
                    if line.startswith(b"data:"):
                        counts["tail_items"] += 1
                c.close()
            except (OSError, http.client.HTTPException):
                pass
            if not stop.is_set():
                counts["tail_reconnects"] += 1
                time.sleep(1)

    threads = [threading.Thread(target=every, args=(1.0, stop, native_batch)),
               threading.Thread(target=every, args=(1.0, stop, otlp_export)),
               threading.Thread(target=every, args=(2.0, stop, openclaw)),
               threading.Thread(target=every, args=(5.0, stop, queries)),
               threading.Thread(target=tail, daemon=True)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while (left := secs - (time.monotonic() - t0)) > 0:
        time.sleep(min(60, left))
        print(json.dumps(counts), flush=True)
    stop.set()
    for t in threads[:-1]:
        t.join()
    counts["refused_retried"] = native.refused + otlp.refused + oc.refused + q.refused
    counts["connection_errors"] = native.errors + otlp.errors + oc.errors + q.errors
    print(json.dumps(counts), flush=True)


def tcp_inodes(pid):
    """Inodes of the process's TCP sockets (listening and connected)."""
    out = set()
    for table in ("tcp", "tcp6"):
        try:
            for line in open(f"/proc/{pid}/net/{table}").readlines()[1:]:
                out.add(line.split()[9])
        except OSError:
            pass
    return out


def fds(pid, secs):
    """Samples /proc/PID/fd every 5 s for SECS s. TCP sockets (listeners and client
    connections) are counted apart from the rest; UDP and Unix sockets (the host
    sampler's DNS probes, each open for one query) are transient and not counted."""
    files, sockets = [], []
    end = time.monotonic() + secs
    while True:
        f = s = 0
        d = f"/proc/{pid}/fd"
        tcp = tcp_inodes(pid)
        for name in os.listdir(d):
            try:
                target = os.readlink(f"{d}/{name}")
            except OSError:
                continue  # closed between the listing and the look
            if target.startswith("socket:["):
                s += target[8:-1] in tcp
            else:
                f += 1
        files.append(f)
        sockets.append(s)
        if time.monotonic() + 5 > end:
            break
        time.sleep(5)
    print(f"{min(files)},{max(files)},{min(sockets)},{max(sockets)}")


def report(csv_path, acked_path, shipped_path, db_path, health_json):
    rows = [l.strip().split(",") for l in open(csv_path)][1:]
    rows = [r for r in rows if len(r) > 3 and r[1].isdigit()]
    h = json.loads(health_json) if health_json.strip() else {}
    print(f"samples: {len(rows)} (one a minute)")
    late = [r for r in rows if int(r[0]) >= 10]
    if late:
        rss = [int(r[1]) for r in late]
        files = [int(r[2]) for r in late]
        socks = [int(r[12]) for r in late if len(r) > 13]
        files_max = [int(r[11]) for r in late if len(r) > 13]
        socks_max = [int(r[13]) for r in late if len(r) > 13]
        print(f"RSS at minute 10: {rss[0] / 1024:.1f} MB, at the end: {rss[-1] / 1024:.1f} MB, "
              f"drift {(rss[-1] - rss[0]) / 1024:+.1f} MB, range {(max(rss) - min(rss)) / 1024:.1f} MB "
              f"(min {min(rss) / 1024:.1f}, max {max(rss) / 1024:.1f})")
        print(f"descriptors held after minute 10 (each minute's minimum): files {min(files)}-{max(files)}, "
              f"sockets {min(socks, default=0)}-{max(socks, default=0)}; "
              f"with the moment's transients: at most {max(files_max, default=0)} files, "
              f"{max(socks_max, default=0)} sockets")
    all_rss = [int(r[1]) for r in rows]
    if all_rss:
        print(f"peak RSS sample: {max(all_rss) / 1024:.1f} MB")
    acked = set(l.strip() for l in open(acked_path) if l.strip())
    shipped = set(l.strip() for l in open(shipped_path) if l.strip()) if os.path.exists(shipped_path) else set()
    con = sqlite3.connect(db_path)
    stored = set(r[0] for r in con.execute(
        "SELECT lower(hex(trace_id)) || '-' || lower(hex(span_id)) FROM spans"))
    con.close()
    missing = acked - stored - shipped
    print(f"spans acknowledged (native + OTLP): {len(acked)}; stored now: {len(acked & stored)}; "
          f"shipped (receiver got them in a 200): {len(acked & shipped)}; "
          f"neither: {len(missing)}")
    keys = ["events_received", "events_written", "duplicates_skipped", "records_expired",
            "events_dropped", "queue_depth", "retention_deleted", "retention_unshipped_deleted",
            "unsynced_count", "last_push_status"]
    print("health at the end: " + ", ".join(f"{k}={h.get(k)}" for k in keys))
    ok = True
    if len(missing) > int(h.get("retention_unshipped_deleted") or 0):
        ok = False
        print(f"FAIL: {len(missing)} acknowledged spans neither stored nor shipped, more than "
              f"retention deleted unshipped")
    if h.get("events_dropped"):
        ok = False
        print("FAIL: events dropped")
    received = h.get("events_received") or 0
    accounted = sum(int(h.get(k) or 0) for k in
                    ["events_written", "duplicates_skipped", "records_expired", "queue_depth"])
    print(f"received {received} = written + duplicates + expired + queued {accounted}: "
          f"{'yes' if received == accounted else 'NO'}")
    if late:
        # Drift is growth: the highest sample and the last one against minute 10. The
        # range is printed too; dips below minute 10 are pages handed back (malloc_trim).
        rise = max(max(rss) - rss[0], rss[-1] - rss[0])
        print(f"RSS rise after minute 10 (highest or last sample against minute 10): "
              f"{rise / 1024:+.1f} MB")
        if rise > 2048:
            print("NOT MET: RSS rose more than 2 MB after minute 10")
        if max(files) != min(files) or max(socks, default=0) != min(socks, default=0):
            print("NOT MET: descriptors held changed after minute 10")
    print("accounting: " + ("ok" if ok else "FAILED"))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "receiver":
        receiver(int(sys.argv[2]), sys.argv[3])
    elif mode == "load":
        load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    elif mode == "fds":
        fds(int(sys.argv[2]), float(sys.argv[3]))
    elif mode == "report":
        report(*sys.argv[2:7])
    else:
        sys.exit(__doc__)
