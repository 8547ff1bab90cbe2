#!/usr/bin/env python3
"""OTLP/gRPC load for bench/overload.sh: CONNS clients, each its own HTTP/2 connection,
each exporting 100-span traces (new trace ids every call) back to back for SECS seconds.
Prints one JSON line: calls by gRPC status code, and how many OK/refusals carried what
a client needs to retry (RESOURCE_EXHAUSTED / UNAVAILABLE are the retryable refusals).

  grpc_load.py PORT CONNS SECS
Needs grpcio and opentelemetry-proto (scripts/setup-otel.sh's venv has both).
"""
import asyncio
import json
import os
import sys
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.common.v1 import common_pb2 as common
from opentelemetry.proto.resource.v1 import resource_pb2 as resource
from opentelemetry.proto.trace.v1 import trace_pb2 as trace

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def body():
    spans = [trace.Span(trace_id=b"TRACEPFX" + (i + 1).to_bytes(8, "big"),
                        span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}", kind=1,
                        start_time_unix_nano=1700000000000000000,
                        end_time_unix_nano=1700000001000000000,
                        attributes=[common.KeyValue(key="q", value=common.AnyValue(string_value="x" * 100))])
             for i in range(100)]
    req = ts.ExportTraceServiceRequest(resource_spans=[trace.ResourceSpans(
        resource=resource.Resource(attributes=[common.KeyValue(
            key="service.name", value=common.AnyValue(string_value="bench"))]),
        scope_spans=[trace.ScopeSpans(scope=common.InstrumentationScope(name="b"), spans=spans)])])
    return req.SerializeToString()


async def client(port, until, template, counts):
    # A subchannel pool of its own: one TCP connection per client, as separate processes have.
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.use_local_subchannel_pool", 1),
                                            ("grpc.enable_retries", 0)])
    call = ch.unary_unary(METHOD)
    try:
        while time.monotonic() < until:
            payload = template.replace(b"TRACEPFX", os.urandom(8))
            try:
                await call(payload, timeout=10)
                code = "OK"
            except grpc.aio.AioRpcError as e:
                code = e.code().name
                details = dict(e.trailing_metadata() or ())
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "grpc-status-details-bin" not in details:
                    code += "-no-retry-info"
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    # The connection was refused over the cap: retry after a beat, as an exporter does.
                    await asyncio.sleep(0.2)
            counts[code] = counts.get(code, 0) + 1
    finally:
        await ch.close()


async def main(port, conns, secs):
    template = body()
    counts = {}
    until = time.monotonic() + secs
    await asyncio.gather(*(client(port, until, template, counts) for _ in range(conns)))
    print(json.dumps(counts, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
