"""A generic gRPC client built on gRPC's C core (Python grpcio), as operators use one.

Usage: grpc_c_core.py unix:/path/to/graspd.sock [extra channel option ...]

Uses no files from graspd: it asks the server's reflection for the services and the
descriptors of grasp.v1, then calls grpc.health.v1.Health/Check and
grasp.v1.StatusService/GetStatus. Prints one JSON object with what it learned; exits non-zero
on any failure (tests/interop.rs runs it).
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def reflect(channel, request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    if response.HasField("error_response"):
        raise RuntimeError(response.error_response.error_message)
    return response


def main():
    target = sys.argv[1]
    # Deliberately no `grpc.default_authority` option: the C core then sends the socket path as
    # `:authority`, which is what the test is about.
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)

        services = reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = sorted(s.name for s in services.list_services_response.service)

        # The file defining the service, then every file it imports, as generic clients do.
        pool = descriptor_pool.DescriptorPool()
        wanted = [reflection_pb2.ServerReflectionRequest(file_containing_symbol="grasp.v1.StatusService")]
        protos = {}
        while wanted:
            files = reflect(channel, wanted.pop())
            for raw in files.file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
                protos[proto.name] = proto
                for dependency in proto.dependency:
                    if dependency not in protos:
                        wanted.append(reflection_pb2.ServerReflectionRequest(file_by_filename=dependency))
        # Add dependencies before the files that import them.
        added = set()
        while len(added) < len(protos):
            ready = [
                proto
                for name, proto in protos.items()
                if name not in added and all(d in added for d in proto.dependency)
            ]
            if not ready:
                raise RuntimeError(f"unresolvable imports among {sorted(protos)}")
            for proto in ready:
                pool.Add(proto)
                added.add(proto.name)
        request_type = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grasp.v1.GetStatusRequest")
        )
        response_type = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("grasp.v1.GetStatusResponse")
        )
        get_status = channel.unary_unary(
            "/grasp.v1.StatusService/GetStatus",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        status = get_status(request_type(), timeout=10)

    print(
        json.dumps(
            {
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(serving.status),
                "services": names,
                "status": json_format.MessageToDict(status),
            }
        )
    )


if __name__ == "__main__":
    main()
