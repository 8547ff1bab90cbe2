// Sends spans with the OpenTelemetry JavaScript OTLP/HTTP (JSON) trace exporter to
// OTEL_EXPORTER_OTLP_ENDPOINT; prints the trace and span ids it created.
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { TracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { context, trace } from "@opentelemetry/api";

const provider = new TracerProvider({
  resource: resourceFromAttributes({ "service.name": "js-test" }),
  spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
});
const tracer = provider.getTracer("oct.js", "0.1.0");
const root = tracer.startSpan("openclaw.run", {
  attributes: { "openclaw.provider": "fake", "openclaw.model": "fake-model", "openclaw.channel": "webchat" },
});
const ctx = trace.setSpan(context.active(), root);
const child = tracer.startSpan("openclaw.model.usage", {
  attributes: {
    "openclaw.provider": "fake", "openclaw.model": "fake-model",
    "openclaw.tokens.input": 12, "openclaw.tokens.output": 34, "openclaw.tokens.total": 46,
    "openclaw.sessionId": "js-session",
  },
}, ctx);
child.end();
root.end();
await provider.forceFlush();
await provider.shutdown();
process.stdout.write(JSON.stringify({
  trace_id: root.spanContext().traceId,
  root: root.spanContext().spanId,
  child: child.spanContext().spanId,
}));
