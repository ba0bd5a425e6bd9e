"""The README's grpcurl commands, done as grpcurl does them: through server reflection.

No stubs and no .proto files: the descriptors come from the agent's reflection
service, requests are the README's JSON bodies parsed with protojson rules, and
calls go out as raw bytes. So the documented commands work against a client
agent, and the README cannot drift from the API unnoticed.
"""

from __future__ import annotations

import re
import shlex

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.polyglot.conftest import ROOT
from tests.support.procs import AgentProcess

T = 10


def readme_grpcurl_calls() -> list[tuple[str, str]]:
    """(method, JSON body) of every `grpcurl -plaintext -d '...' ADDR Svc/Method` in the README."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    calls = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("grpcurl ") or " -d " not in line:
            continue
        words = shlex.split(line.split("#")[0])
        body = words[words.index("-d") + 1]
        (method,) = [w for w in words if re.fullmatch(r"consul\.\w+\.v1\.\w+/\w+", w)]
        calls.append((method, body))
    return calls


def test_readme_has_grpcurl_examples() -> None:
    text = (ROOT / "README.md").read_text()
    assert "grpcurl -plaintext 127.0.0.1:8502 list" in text
    assert len(readme_grpcurl_calls()) >= 2


@pytest.mark.timeout(60)
def test_readme_grpcurl_calls_through_reflection(client_agent: AgentProcess) -> None:
    with grpc.insecure_channel(client_agent.grpc_addr) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        # `grpcurl list`
        services = set(db.get_services())
        for name in ("KVService", "CatalogService", "HealthService", "StatusService"):
            area = name.removesuffix("Service").lower()
            assert f"consul.{area}.v1.{name}" in services, services
        assert "consul.agent.v1.AgentService" in services
        assert "grpc.health.v1.Health" in services

        pool = descriptor_pool.DescriptorPool(db)
        for method, body in readme_grpcurl_calls():
            service_name, method_name = method.split("/")
            m = pool.FindServiceByName(service_name).FindMethodByName(method_name)
            request_cls = message_factory.GetMessageClass(m.input_type)
            response_cls = message_factory.GetMessageClass(m.output_type)
            request = json_format.Parse(body, request_cls())
            if request.DESCRIPTOR.fields_by_name.get("options") and request.options.max_wait:
                request.options.max_wait.FromSeconds(1)  # keep the blocking query short here
            call = channel.unary_unary(
                f"/{method}",
                request_serializer=lambda msg: msg.SerializeToString(),
                response_deserializer=response_cls.FromString,
            )
            response = call(request, timeout=T)
            # The answer prints as grpcurl would print it.
            json_format.MessageToJson(response)
            if method_name == "Put":
                assert response.applied
                assert request.value == b"v1"
            if method_name == "ServiceHealth":
                assert response.meta.index > 0
