#!/usr/bin/env bash
# Fleet benchmark, queries at size (issue #21): a central on a private PostgreSQL server
# holding SPANS spans (default 10 million) from 50 sidecars over DAYS days, then the
# dashboard's questions through the API, 100 times each: p50 and p95 in ms.
# The rows are made by SQL (generate_series) in the central's own schema, in chunks of a
# million: the central made the schema and the day partitions (one real span a day sent
# through its API), so the tables, partitions and indexes are the ones it keeps. Each
# run is an agent run and three LLM calls (200-character texts, about 300 bytes of
# attributes); runs summaries and hourly usage are computed from the spans by SQL.
# OPENCLAW=1 makes each run an OpenClaw run (its root from the plugin: session key,
# trigger, a third of them heartbeats and a tenth cron jobs, channel, silent reply,
# context used and limit), the third call of each run a tool call (one of eight tools),
# and times the OpenClaw views over a day and a week too (five times each: they read
# every run of the window).
# Usage: SPANS=10000000 DAYS=7 [OPENCLAW=1] bash bench/central_queries.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPANS=${SPANS:-10000000}
DAYS=${DAYS:-7}
OPENCLAW=${OPENCLAW:-0}
source bench/central_lib.sh
now_ms=$(date +%s%3N)
# One span a day through the API: the central makes each day's partitions.
for d in $(seq 0 "$DAYS"); do
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "[{\"provider\":\"openai\",\"model\":\"gpt-4o-mini\",\"prompt_tokens\":1,\"timestamp\":$((now_ms - d * 86400000 - 60000))}]" \
    "http://127.0.0.1:$port/v1/traces"
done
sleep 2
end_ns=$(( (now_ms - 60000) * 1000000 ))
span_ns=$(python3 -c "print(($DAYS * 86400 * 10**9) // $SPANS)")
start_ns=$(( end_ns - SPANS * span_ns ))
echo "# $SPANS spans over $DAYS days, one every $span_ns ns, 50 sidecars, 5 agents each"
t0=$(date +%s)
chunk=1000000
for lo in $(seq 0 $chunk $((SPANS - 1))); do
  hi=$(( lo + chunk - 1 < SPANS - 1 ? lo + chunk - 1 : SPANS - 1 ))
  psql "$url" -Xq -v ON_ERROR_STOP=1 <<SQL
INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status,
  agent_id, session_id, operation, provider, request_model, response_model, input_tokens,
  output_tokens, total_tokens, cost_usd, cost_source, latency_ms, input_text, input_text_len,
  output_text, output_text_len, attributes, resource, source, received_ns, instance_id, region,
  tool_name)
SELECT decode(lpad(to_hex(g / 4), 32, '0'), 'hex'),
  decode(lpad(to_hex(g), 16, '0'), 'hex'),
  CASE WHEN g % 4 = 0 THEN NULL ELSE decode(lpad(to_hex(g - g % 4), 16, '0'), 'hex') END,
  CASE WHEN g % 4 = 0 THEN 'invoke_agent agent-' || (g / 4) % 5 ELSE 'chat gpt-4o-mini' END,
  CASE WHEN g % 4 = 0 THEN 'agent_run' WHEN $OPENCLAW = 1 AND g % 4 = 3 THEN 'tool_call' ELSE 'llm_call' END,
  $start_ns + (g - g % 4) * $span_ns + (g % 4) * 1000000,
  $start_ns + (g - g % 4) * $span_ns + (g % 4) * 1000000 + 800000000,
  CASE WHEN g % 97 = 0 THEN 'error' ELSE 'ok' END,
  'agent-' || (g / 4) % 5, 's-' || (g / 400), CASE WHEN g % 4 = 0 THEN 'invoke_agent' ELSE 'chat' END,
  CASE WHEN g % 4 = 0 THEN NULL ELSE 'openai' END,
  CASE WHEN g % 4 = 0 THEN NULL ELSE 'gpt-4o-mini' END, CASE WHEN g % 4 = 0 THEN NULL ELSE 'gpt-4o-mini' END,
  CASE WHEN g % 4 = 0 THEN NULL ELSE 500 + g % 300 END, CASE WHEN g % 4 = 0 THEN NULL ELSE 40 + g % 60 END,
  CASE WHEN g % 4 = 0 THEN NULL ELSE 540 + g % 300 + g % 60 END,
  CASE WHEN g % 4 = 0 THEN NULL ELSE 0.0001 * (1 + g % 7) END, CASE WHEN g % 4 = 0 THEN NULL ELSE 'computed' END,
  800, md5(g::text) || repeat(' plan search read summarise', 6), 200,
  'done ' || g, 10,
  CASE WHEN $OPENCLAW = 1 AND g % 4 = 0 THEN
    '{"gen_ai.operation.name":"invoke_agent","gen_ai.agent.id":"agent-' || (g / 4) % 5
    || '","openclaw.session_key":"agent:agent-' || (g / 4) % 5 || ':'
    || CASE WHEN (g / 4) % 10 = 1 THEN 'cron:job-' || (g / 4) % 3 ELSE 'telegram:direct:' || (g / 400) END
    || '","openclaw.trigger":"' || CASE WHEN (g / 4) % 3 = 0 THEN 'heartbeat' WHEN (g / 4) % 10 = 1 THEN 'cron' ELSE 'user' END
    || '","openclaw.channel":"' || CASE (g / 4) % 4 WHEN 0 THEN 'telegram' WHEN 1 THEN 'webchat' WHEN 2 THEN 'slack' ELSE 'discord' END
    || CASE WHEN (g / 4) % 3 = 0 THEN '","openclaw.reply":"HEARTBEAT_OK' ELSE '' END
    || '","openclaw.context.used":' || (20000 + g % 150000) || ',"openclaw.context.limit":200000'
    || ',"openclaw.run_id":"' || md5(g::text) || '","openclaw.provider":"openai","openclaw.model":"gpt-4o-mini"}'
  ELSE
  '{"gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"gpt-4o-mini","gen_ai.request.temperature":0.2,"gen_ai.response.finish_reasons":["stop"],"gen_ai.response.id":"chatcmpl-' || md5(g::text) || '","server.address":"api.openai.com"}'
  END,
  '{"service.name":"openclaw","service.instance.id":"sidecar-' || lpad(((g / 4) % 50)::text, 2, '0') || '","cloud.region":"ams"}',
  CASE WHEN $OPENCLAW = 1 THEN 'openclaw' ELSE 'push' END, $end_ns, 'sidecar-' || lpad(((g / 4) % 50)::text, 2, '0'), 'ams',
  CASE WHEN $OPENCLAW = 1 AND g % 4 = 3 THEN (ARRAY['read', 'write', 'exec', 'web_search', 'ls', 'grep', 'edit', 'browser'])[1 + (g / 4) % 8] END
FROM generate_series($lo::int8, $hi::int8) g;
SQL
  echo "  spans up to $((hi + 1)): $(( $(date +%s) - t0 )) s"
done
psql "$url" -Xq -v ON_ERROR_STOP=1 <<SQL
INSERT INTO traces (trace_id, root_span_id, root_name, start_ns, end_ns, status, span_count,
  error_count, llm_calls, tool_calls, input_tokens, output_tokens, total_tokens,
  cache_read_tokens, cache_write_tokens, cost_usd, agent_id, session_id, user_id, instance_id,
  updated_ns)
SELECT trace_id, (array_agg(span_id) FILTER (WHERE parent_span_id IS NULL))[1],
  min(name) FILTER (WHERE parent_span_id IS NULL), min(start_ns), max(end_ns),
  CASE WHEN bool_or(status = 'error') THEN 'error' ELSE 'ok' END, count(*),
  count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE kind = 'llm_call'),
  count(*) FILTER (WHERE kind = 'tool_call'),
  COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0), COALESCE(sum(total_tokens), 0),
  0, 0, sum(cost_usd), min(agent_id), min(session_id), NULL, min(instance_id), $end_ns
FROM spans WHERE start_ns >= $start_ns AND source IN ('push', 'openclaw') GROUP BY trace_id
ON CONFLICT (trace_id) DO NOTHING;
-- The root's OpenClaw attributes on its run, as the central's writer keeps them.
UPDATE traces t SET root_attributes = (
    SELECT jsonb_object_agg(k, v)::text FROM jsonb_each(s.attributes::jsonb) AS e(k, v)
    WHERE k LIKE 'openclaw.%')
FROM spans s
WHERE s.trace_id = t.trace_id AND s.span_id = t.root_span_id AND s.attributes LIKE '%openclaw.%';
INSERT INTO usage_hourly (hour_ns, instance_id, agent_id, provider, model, calls, errors,
  input_tokens, output_tokens, total_tokens, cost_usd, priced_calls, latency_ms_sum, latency_count)
SELECT start_ns - mod(start_ns, 3600000000000), COALESCE(instance_id, ''), COALESCE(agent_id, ''),
  COALESCE(provider, ''), COALESCE(response_model, request_model, ''),
  count(*), count(*) FILTER (WHERE status = 'error'), sum(input_tokens), sum(output_tokens),
  sum(total_tokens), sum(cost_usd), count(*), sum(latency_ms), count(*)
FROM spans WHERE start_ns >= $start_ns AND kind = 'llm_call' AND source IN ('push', 'openclaw') GROUP BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING;
SQL
# What autovacuum does after bulk inserts (it would, minutes later): the visibility map
# that lets the overview count runs from the index alone.
psql "$url" -Xq -v ON_ERROR_STOP=1 -c "VACUUM ANALYZE"
echo "fill_seconds: $(( $(date +%s) - t0 ))"
psql "$url" -XtA -c "SELECT 'spans: ' || (SELECT count(*) FROM spans) || ', runs: ' || (SELECT count(*) FROM traces) || ', usage rows: ' || (SELECT count(*) FROM usage_hourly) || ', database: ' || pg_size_pretty(pg_database_size(current_database()))"
echo "central_rss_kib: $(awk '$1=="VmRSS:"{print $2}' "/proc/$central/status")"
python3 - "$port" "$TOKEN" "$now_ms" "$OPENCLAW" <<'EOF'
import http.client, json, sys, time
port, token, now_ms, openclaw = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def get(path):
    t = time.perf_counter()
    c.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, (path, r.status, body[:300])
    return (time.perf_counter() - t) * 1000, json.loads(body) if body[:1] in b"{[" else body
_, page = get("/v1/traces?limit=50")
ids = [t["trace_id"] for t in page["traces"]]
_, old = get(f"/v1/traces?limit=50&to={now_ms - 3 * 86400000}")
ids += [t["trace_id"] for t in old["traces"]]
day = 86400000
for name, paths in [
        ("runs_list", ["/v1/traces?limit=50"]),
        ("runs_list_page_2", [f"/v1/traces?limit=50&cursor={page['next_cursor']}"]),
        ("runs_list_one_sidecar", ["/v1/traces?limit=50&instance=sidecar-07"]),
        ("runs_list_one_agent", ["/v1/traces?limit=50&agent_id=agent-3"]),
        ("runs_list_errors", ["/v1/traces?limit=50&status=error"]),
        ("one_run", [f"/v1/traces/{i}" for i in ids]),
        ("usage_24h_by_model", [f"/v1/usage?percentiles=false&group_by=model&from={now_ms - day}"]),
        ("usage_7d_by_agent_daily", [f"/v1/usage?percentiles=false&group_by=agent&bucket=day&from={now_ms - 7 * day}"]),
        ("overview_24h", [f"/v1/overview?from={now_ms - day}&to={now_ms}"]),
        ("overview_7d", [f"/v1/overview?from={now_ms - 7 * day}&to={now_ms}"]),
        ("errors_list", ["/v1/errors?limit=50"])]:
    ms = sorted(get(paths[k % len(paths)])[0] for k in range(100))
    print(f"{name}: p50 {ms[49]:.2f} ms, p95 {ms[94]:.2f} ms")
# Usage by session is summed from the range's model calls (the rollups keep no session):
# a scan of the range, 5 times each (median, slowest).
for name, path in [("usage_1h_by_session", f"/v1/usage?percentiles=false&group_by=session&from={now_ms - 3600000}"),
                   ("usage_24h_by_session", f"/v1/usage?percentiles=false&group_by=session&from={now_ms - day}"),
                   ("usage_24h_one_session", f"/v1/usage?session_id=s-7&from={now_ms - day}"),
                   ("openclaw_cache_by_session_24h", f"/v1/openclaw/cache?by=session&from={now_ms - day}&to={now_ms}")]:
    ms = sorted(get(path)[0] for _ in range(5))
    print(f"{name}: median {ms[2]:.1f} ms, slowest {ms[4]:.1f} ms")
if openclaw:
    # The OpenClaw views read every run of the window: 5 times each (median, slowest).
    for name, path in [(f"openclaw_{v}_{label}", f"/v1/openclaw/{v}?from={now_ms - days * day}&to={now_ms}")
                       for label, days in [("24h", 1), ("7d", 7)]
                       for v in ["scheduled", "context", "channels", "subagents", "waste", "cache"]]:
        ms = sorted(get(path)[0] for _ in range(5))
        print(f"{name}: median {ms[2]:.1f} ms, slowest {ms[4]:.1f} ms")
EOF
echo "central_rss_after_kib: $(awk '$1=="VmRSS:"{print $2}' "/proc/$central/status")"
