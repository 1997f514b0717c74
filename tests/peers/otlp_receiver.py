"""A minimal OTLP/gRPC receiver for the tests: prints one JSON line per span, and one per log
record (with a "log" key), on stdout.

usage: otlp_receiver.py PORT
Needs: pip install opentelemetry-proto grpcio (scripts/test.sh installs them in a venv).
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


_out = threading.Lock()


def emit(line):
    """One JSON line, whole: the span and log services run on two threads, and print() writes
    the text and its newline separately, so unlocked lines could interleave and be lost."""
    with _out:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "int_value", "double_value", "bool_value") else str(v)


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for rs in request.resource_spans:
            service = ""
            for attr in rs.resource.attributes:
                if attr.key == "service.name":
                    service = attr.value.string_value
            for ss in rs.scope_spans:
                for span in ss.spans:
                    line = {
                        "service": service,
                        "name": span.name,
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "kind": span.kind,
                        "links": [{"trace_id": l.trace_id.hex(), "span_id": l.span_id.hex()} for l in span.links],
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                        "status": {"code": span.status.code, "message": span.status.message},
                    }
                    emit(line)
        return trace_service_pb2.ExportTraceServiceResponse()


class LogReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    line = {
                        "log": value(rec.body),
                        "severity": rec.severity_text,
                        "attributes": {a.key: value(a.value) for a in rec.attributes},
                    }
                    emit(line)
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    port = int(sys.argv[1])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogReceiver(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    emit({"listening": port})
    server.wait_for_termination()


if __name__ == "__main__":
    main()
