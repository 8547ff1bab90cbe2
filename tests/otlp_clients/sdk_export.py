"""Sends spans, metrics and logs with the OpenTelemetry Python SDK and its OTLP exporters,
configured only by the standard OTEL_* environment variables (as a user would).
Prints what was sent as JSON so the test can check every item landed.

usage: python sdk_export.py   (OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL set)
"""
import json
import logging
import os
import sys

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

protocol = os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"]
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

resource = Resource.create({"service.name": "sdk-test", "gen_ai.agent.name": "planner"})

tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
tracer = tracer_provider.get_tracer("oct.test", "1.2.3")

reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = meter_provider.get_meter("oct.test")

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
log = logging.getLogger("oct.test.logger")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
log.propagate = False

sent = {"spans": {}}
with tracer.start_as_current_span("invoke_agent planner", kind=SpanKind.INTERNAL) as root:
    root.set_attribute("gen_ai.operation.name", "invoke_agent")
    root.set_attribute("session.id", "sess-42")
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm:
        llm.set_attributes({
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cache_read.input_tokens": 100,
            "gen_ai.response.finish_reasons": ["stop"],
            "custom.flag": True,
        })
        sent["spans"]["llm"] = format(llm.get_span_context().span_id, "016x")
        log.warning("rate limit close", extra={"remaining": 3})
    with tracer.start_as_current_span("execute_tool ls") as tool:
        tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "ls",
                             "gen_ai.tool.call.id": "call_1"})
        try:
            raise FileNotFoundError("no such dir: /nope")
        except FileNotFoundError as e:
            tool.record_exception(e)
            tool.set_status(Status(StatusCode.ERROR, "tool failed"))
        sent["spans"]["tool"] = format(tool.get_span_context().span_id, "016x")
    sent["spans"]["root"] = format(root.get_span_context().span_id, "016x")
    sent["trace_id"] = format(root.get_span_context().trace_id, "032x")

counter = meter.create_counter("oct.test.requests", unit="1")
hist = meter.create_histogram("oct.test.latency", unit="ms")
meter.create_observable_gauge(
    "oct.test.queue_depth", callbacks=[lambda options: [Observation(7, {"queue": "main"})]]
)
counter.add(3, {"route": "/chat"})
hist.record(12.5, {"route": "/chat"})
hist.record(250.0, {"route": "/chat"})
meter_provider.force_flush()
counter.add(2, {"route": "/chat"})
meter_provider.force_flush()

log.error("lost connection", extra={"session.id": "sess-42"})

tracer_provider.shutdown()
meter_provider.shutdown()
logger_provider.shutdown()
json.dump(sent, sys.stdout)
