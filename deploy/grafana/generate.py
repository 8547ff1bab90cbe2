#!/usr/bin/env python3
"""Writes deploy/grafana/openclaw-trace.json (the dashboard is generated so its 50-odd
PromQL expressions share one label selector and layout). Run it after editing, and
`cargo test --test metrics every_dashboard` checks every expression against a real
Prometheus."""
import json
J='{job=~"$job", instance=~"$instance"}'
def sel(extra=""):
    inner = 'job=~"$job", instance=~"$instance"' + (", " + extra if extra else "")
    return "{" + inner + "}"
panels=[]
y=0
pid=1
def row(title):
    global y,pid
    panels.append({"type":"row","title":title,"collapsed":False,"id":pid,"gridPos":{"h":1,"w":24,"x":0,"y":y},"panels":[]})
    pid+=1; y+=1
x=0; rowh=0
def panel(title, targets, kind="timeseries", w=8, h=8, unit=None, desc=None, extra=None):
    global x,y,pid,rowh
    if x+w>24:
        x=0; y+=rowh; rowh=0
    p={"type":kind,"title":title,"id":pid,"datasource":{"type":"prometheus","uid":"${datasource}"},
       "gridPos":{"h":h,"w":w,"x":x,"y":y},
       "targets":[{"refId":chr(65+i),"datasource":{"type":"prometheus","uid":"${datasource}"},"expr":e,"legendFormat":l,**({"instant":True,"range":False,"format":"table"} if kind in ("table",) else {})} for i,(e,l) in enumerate(targets)],
       "fieldConfig":{"defaults":({"unit":unit} if unit else {}),"overrides":[]},
       "options":{}}
    if desc: p["description"]=desc
    if kind=="timeseries":
        p["options"]={"legend":{"displayMode":"list","placement":"bottom"},"tooltip":{"mode":"multi"}}
    if extra: p.update(extra)
    panels.append(p); pid+=1
    x+=w; rowh=max(rowh,h)
def endrow():
    global x,y,rowh
    y+=rowh; x=0; rowh=0
R='$__rate_interval'
S_ERRT=sel('error_type!=""')
S_ERR=sel('status="error"')
S_AGENT=sel('oct_process_role="agent"')
S_USED=sel('system_memory_state="used"')
row("Calls, tokens and cost")
panel("LLM calls / s by model", [(f'sum by (gen_ai_request_model) (rate(openclaw_trace_llm_calls_total{sel()}[{R}]))',"{{gen_ai_request_model}}")], unit="reqps")
panel("Tokens / s by model and type", [(f'sum by (gen_ai_request_model, type) (rate(openclaw_trace_llm_tokens_total{sel()}[{R}]))',"{{gen_ai_request_model}} {{type}}")])
panel("Cost (USD / hour) by model", [(f'3600 * sum by (gen_ai_request_model) (rate(openclaw_trace_llm_cost_usd_total{sel()}[{R}]))',"{{gen_ai_request_model}}")], unit="currencyUSD")
panel("Cost in the range by model", [(f'sum by (gen_ai_request_model) (increase(openclaw_trace_llm_cost_usd_total{sel()}[$__range]))',"{{gen_ai_request_model}}")], kind="bargauge", w=8, unit="currencyUSD",
      extra={"options":{"orientation":"horizontal","displayMode":"gradient","reduceOptions":{"calcs":["lastNotNull"],"values":False}}})
panel("Tokens in the range by model", [(f'sum by (gen_ai_request_model) (increase(openclaw_trace_llm_tokens_total{sel()}[$__range]))',"{{gen_ai_request_model}}")], kind="bargauge", w=8, unit="short",
      extra={"options":{"orientation":"horizontal","displayMode":"gradient","reduceOptions":{"calcs":["lastNotNull"],"values":False}}})
panel("Tool calls / s by tool and status", [(f'sum by (gen_ai_tool_name, status) (rate(openclaw_trace_tool_calls_total{sel()}[{R}]))',"{{gen_ai_tool_name}} {{status}}")], unit="reqps")
endrow()
row("Latency (from the histograms)")
panel("LLM call duration p50 / p95 / p99", [(f'histogram_quantile({q}, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket{sel()}[{R}])))',f"p{int(q*100)}") for q in (0.5,0.95,0.99)], unit="s")
panel("LLM call duration p95 by model", [(f'histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{sel()}[{R}])))',"{{gen_ai_request_model}}")], unit="s")
panel("Time to first token p50 / p95", [(f'histogram_quantile({q}, sum by (le) (rate(gen_ai_server_time_to_first_token_seconds_bucket{sel()}[{R}])))',f"p{int(q*100)}") for q in (0.5,0.95)], unit="s")
panel("Tool duration p95 by tool", [(f'histogram_quantile(0.95, sum by (le, gen_ai_tool_name) (rate(openclaw_trace_tool_duration_seconds_bucket{sel()}[{R}])))',"{{gen_ai_tool_name}}")], unit="s")
panel("Agent run duration p50 / p95", [(f'histogram_quantile({q}, sum by (le) (rate(openclaw_trace_agent_run_duration_seconds_bucket{sel()}[{R}])))',f"p{int(q*100)}") for q in (0.5,0.95)], unit="s")
panel("Tokens per call p95 (input / output)", [(f'histogram_quantile(0.95, sum by (le, gen_ai_token_type) (rate(gen_ai_client_token_usage_bucket{sel()}[{R}])))',"{{gen_ai_token_type}}")], unit="short")
endrow()
row("Errors")
panel("Failed LLM calls / s by error type", [(f'sum by (error_type) (rate(gen_ai_client_operation_duration_seconds_count{S_ERRT}[{R}]))',"{{error_type}}")], unit="reqps")
panel("Share of LLM calls failing", [(f'sum(rate(openclaw_trace_llm_calls_total{S_ERR}[{R}])) / sum(rate(openclaw_trace_llm_calls_total{sel()}[{R}]))',"failed")], unit="percentunit")
panel("Error events / s by type and category", [(f'sum by (error_type, category) (rate(openclaw_trace_errors_total{sel()}[{R}]))',"{{error_type}} ({{category}})")], unit="short")
panel("Tool errors / s by tool and type", [(f'sum by (gen_ai_tool_name, error_type) (rate(openclaw_trace_tool_errors_total{sel()}[{R}]))',"{{gen_ai_tool_name}} {{error_type}}")], unit="short")
panel("Agent runs / s by outcome", [(f'sum by (outcome) (rate(openclaw_trace_agent_runs_total{sel()}[{R}]))',"{{outcome}}")], unit="short")
endrow()
row("Budgets")
panel("Budget used", [(f'max by (budget) (openclaw_trace_budget_used_ratio{sel()})',"{{budget}}")], kind="bargauge", w=12, unit="percentunit",
      extra={"options":{"orientation":"horizontal","displayMode":"lcd","reduceOptions":{"calcs":["lastNotNull"],"values":False}},
             "fieldConfig":{"defaults":{"unit":"percentunit","min":0,"max":1,"thresholds":{"mode":"absolute","steps":[{"color":"green","value":None},{"color":"orange","value":0.8},{"color":"red","value":1}]}},"overrides":[]}})
panel("Budget spent and limit", [(f'max by (budget, unit) (openclaw_trace_budget_spent{sel()})',"{{budget}} spent"),(f'max by (budget, unit) (openclaw_trace_budget_limit{sel()})',"{{budget}} limit")], w=12)
endrow()
row("The agent's process")
panel("Agent up", [(f'max(openclaw_trace_host_oct_agent_up_ratio{sel()})',"up")], kind="stat", w=4, extra={"options":{"reduceOptions":{"calcs":["lastNotNull"],"values":False},"colorMode":"background"},"fieldConfig":{"defaults":{"mappings":[{"type":"value","options":{"0":{"text":"down","color":"red"},"1":{"text":"up","color":"green"}}}]},"overrides":[]}})
panel("Agent restarts in the range", [(f'sum(increase(openclaw_trace_host_oct_agent_restarts_total{sel()}[$__range]))',"restarts")], kind="stat", w=4, extra={"options":{"reduceOptions":{"calcs":["lastNotNull"],"values":False}}})
panel("Agent CPU", [(f'sum(openclaw_trace_host_process_cpu_utilization_ratio{S_AGENT})',"cpu")], w=8, unit="percentunit")
panel("Agent memory (RSS)", [(f'sum(openclaw_trace_host_process_memory_usage_bytes{S_AGENT})',"rss")], w=8, unit="bytes")
endrow()
row("Host")
panel("CPU", [(f'max(openclaw_trace_host_system_cpu_utilization_ratio{sel()})',"cpu"),(f'max(openclaw_trace_host_system_cpu_load_average_1m{sel()}) / max(openclaw_trace_host_system_cpu_logical{sel()})',"load 1m per CPU")], unit="percentunit")
panel("Memory", [(f'max(openclaw_trace_host_system_memory_utilization_ratio{S_USED})',"used"),(f'max(openclaw_trace_host_system_linux_memory_available_bytes{sel()}) / max(openclaw_trace_host_system_memory_limit_bytes{sel()})',"available")], unit="percentunit")
panel("Disk used by volume", [(f'max by (system_filesystem_mountpoint) (openclaw_trace_host_system_filesystem_utilization_ratio{sel()})',"{{system_filesystem_mountpoint}}")], unit="percentunit")
endrow()
row("The sidecar itself")
panel("Scraped", [(f'min(up{sel()})',"up")], kind="stat", w=4, extra={"options":{"reduceOptions":{"calcs":["lastNotNull"],"values":False},"colorMode":"background"},"fieldConfig":{"defaults":{"mappings":[{"type":"value","options":{"0":{"text":"down","color":"red"},"1":{"text":"up","color":"green"}}}]},"overrides":[]}})
panel("Writer failing", [(f'max(openclaw_trace_writer_failing{sel()})',"failing")], kind="stat", w=4, extra={"options":{"reduceOptions":{"calcs":["lastNotNull"],"values":False},"colorMode":"background"},"fieldConfig":{"defaults":{"mappings":[{"type":"value","options":{"0":{"text":"ok","color":"green"},"1":{"text":"failing","color":"red"}}}]},"overrides":[]}})
panel("Queue fill", [(f'max(openclaw_trace_queue_depth{sel()} / openclaw_trace_queue_capacity{sel()})',"records"),(f'max(openclaw_trace_queue_bytes{sel()} / openclaw_trace_queue_max_bytes{sel()})',"bytes")], w=8, unit="percentunit")
panel("Records / s: received, written, dropped", [(f'sum by (source) (rate(openclaw_trace_records_received_total{sel()}[{R}]))',"received {{source}}"),(f'sum(rate(openclaw_trace_records_written_total{sel()}[{R}]))',"written"),(f'sum by (source) (rate(openclaw_trace_records_dropped_total{sel()}[{R}]))',"dropped {{source}}")], w=8)
panel("Database, WAL and volume", [(f'max(openclaw_trace_db_size_bytes{sel()})',"database"),(f'max(openclaw_trace_wal_size_bytes{sel()})',"WAL"),(f'max(openclaw_trace_volume_free_bytes{sel()})',"volume free")], unit="bytes")
panel("Write batch latency", [(f'max(openclaw_trace_last_batch_write_seconds{sel()})',"last batch"),(f'sum(rate(openclaw_trace_batch_write_seconds_total{sel()}[{R}])) / sum(rate(openclaw_trace_write_batches_total{sel()}[{R}]))',"mean")], unit="s")
panel("Sinks: backlog and consecutive failures", [(f'sum by (sink) (openclaw_trace_sink_backlog_rows{sel()})',"{{sink}} backlog rows"),(f'max by (sink) (openclaw_trace_sink_consecutive_failures{sel()})',"{{sink}} failures in a row")])
panel("Sinks: records sent and dead letters / s", [(f'sum by (sink) (rate(openclaw_trace_sink_records_sent_total{sel()}[{R}]))',"{{sink}} sent"),(f'sum by (sink) (rate(openclaw_trace_sink_dead_letters_total{sel()}[{R}]))',"{{sink}} dead letters")])
panel("Price table age (days)", [(f'(time() - max(openclaw_trace_price_table_as_of_timestamp_seconds{sel()})) / 86400',"days")], kind="stat", w=4, extra={"options":{"reduceOptions":{"calcs":["lastNotNull"],"values":False},"colorMode":"value"},"fieldConfig":{"defaults":{"unit":"none","decimals":0,"thresholds":{"mode":"absolute","steps":[{"color":"green","value":None},{"color":"orange","value":90}]}},"overrides":[]}})
panel("Sidecar CPU and memory", [(f'rate(process_cpu_seconds_total{sel()}[{R}])',"cpu (cores)"),(f'process_resident_memory_bytes{sel()} / 1048576',"rss MiB")])
endrow()
dash={
 "title":"openclaw-trace","uid":"openclaw-trace","tags":["openclaw-trace","llm","agents"],
 "description":"Calls, tokens, cost, latency, errors and budgets of an AI agent, its process and host, and the openclaw-trace sidecar itself, from openclaw-trace's /metrics.",
 "editable":True,"graphTooltip":1,"schemaVersion":39,"version":1,"refresh":"30s",
 "time":{"from":"now-6h","to":"now"},
 "templating":{"list":[
   {"name":"datasource","label":"Prometheus","type":"datasource","query":"prometheus","current":{},"hide":0},
   {"name":"job","label":"job","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},"query":{"query":"label_values(openclaw_trace_build_info, job)","refId":"job"},"definition":"label_values(openclaw_trace_build_info, job)","includeAll":True,"multi":True,"current":{"text":"All","value":"$__all"},"allValue":".+","refresh":2},
   {"name":"instance","label":"instance","type":"query","datasource":{"type":"prometheus","uid":"${datasource}"},"query":{"query":"label_values(openclaw_trace_build_info{job=~\"$job\"}, instance)","refId":"instance"},"definition":"label_values(openclaw_trace_build_info{job=~\"$job\"}, instance)","includeAll":True,"multi":True,"current":{"text":"All","value":"$__all"},"allValue":".+","refresh":2},
 ]},
 "annotations":{"list":[]},
 "panels":panels,
}
open(__import__('pathlib').Path(__file__).with_name('openclaw-trace.json'),'w').write(json.dumps(dash,indent=2)+"\n")
print(len(panels), sum(len(p.get("targets",[])) for p in panels))
