"""The official `opentelemetry-instrumentation-openai-v2` instruments the `openai` client,
which calls a fake OpenAI-compatible server on loopback; spans go out over OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT. Prints the trace id of the call."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from openai import OpenAI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


class FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(length) or b"{}")
        body = json.dumps({
            "id": "chatcmpl-fake-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": req.get("model", "gpt-4o-mini") + "-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Telemetry flows like a stream."},
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": 17, "completion_tokens": 9, "total_tokens": 26},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
threading.Thread(target=server.serve_forever, daemon=True).start()

provider = TracerProvider(resource=Resource.create({"service.name": "openai-app"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)
OpenAIInstrumentor().instrument()

client = OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="sk-test")
tracer = trace.get_tracer("app")
with tracer.start_as_current_span("handle request") as root:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Write a short poem on open telemetry."}],
    )
    trace_id = format(root.get_span_context().trace_id, "032x")

provider.shutdown()
server.shutdown()
json.dump({"trace_id": trace_id}, sys.stdout)
