"""Local state: registration rules, persistence, and the critical-service reaper."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.errors import InvalidArgument, NotFound
from agent.local.state import NODE_MAINT, LocalState
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb


def ttl_service(name: str, dereg: int = 0) -> apb.ServiceDefinition:
    d = pb.CheckDefinition(ttl=Duration(seconds=30))
    if dereg:
        d.deregister_critical_service_after.CopyFrom(Duration(seconds=dereg))
    return apb.ServiceDefinition(
        service=pb.Service(name=name, port=80), checks=[apb.CheckDefinition(definition=d)]
    )


async def test_service_with_checks_registers_and_persists(tmp_path: Path) -> None:
    async with LocalState("n1", data_dir=str(tmp_path)) as local:
        local.add_service(ttl_service("web"))
        local.set_maintenance(True, "reboot")
        assert [c.check_id for c in local.health_checks()] == [NODE_MAINT, "service:web"]
        assert local.health_checks()[1].status == pb.HEALTH_STATUS_CRITICAL
    async with LocalState("n1", data_dir=str(tmp_path)) as again:
        assert list(again.services) == ["web"]
        assert sorted(c.check_id for c in again.health_checks()) == [NODE_MAINT, "service:web"]


async def test_registration_errors() -> None:
    async with LocalState("n1") as local:
        with pytest.raises(InvalidArgument):
            local.add_check(apb.CheckDefinition(name="c", definition=pb.CheckDefinition()))
        # Consul's AgentRegisterCheck: 404 'ServiceID "nope" does not exist'.
        with pytest.raises(NotFound, match='ServiceID "nope" does not exist'):
            local.add_check(
                apb.CheckDefinition(
                    name="c",
                    service_id="nope",
                    definition=pb.CheckDefinition(ttl=Duration(seconds=5)),
                )
            )
        with pytest.raises(NotFound):
            local.remove_service("nope")
        with pytest.raises(InvalidArgument):
            local.add_service(
                apb.ServiceDefinition(
                    service=pb.Service(name="x"),
                    checks=[
                        apb.CheckDefinition(
                            definition=pb.CheckDefinition(
                                args=["true"], interval=Duration(seconds=1)
                            )
                        )
                    ],
                )
            )  # script checks are off by default


async def test_critical_service_is_deregistered_after_its_limit() -> None:
    now = [1000.0]
    async with LocalState("n1", clock=lambda: now[0]) as local:
        local.add_service(ttl_service("doomed", dereg=60))
        local.add_service(ttl_service("kept"))
        now[0] += 30
        assert local.reap_once() == []
        now[0] += 31  # critical (never passed) for 61 s > 60 s
        assert local.reap_once() == ["doomed"]
        assert list(local.services) == ["kept"]
