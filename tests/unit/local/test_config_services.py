"""Services and checks from config files on the local state: applied, reloaded, never persisted."""

from __future__ import annotations

from pathlib import Path

from agent.convert import seconds_duration
from agent.local.state import LocalState
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb


def svc(name: str, port: int = 80, ttl: float | None = None) -> apb.ServiceDefinition:
    checks = []
    if ttl is not None:
        checks.append(apb.CheckDefinition(definition=pb.CheckDefinition(ttl=seconds_duration(ttl))))
    return apb.ServiceDefinition(service=pb.Service(id=name, name=name, port=port), checks=checks)


async def test_config_services_apply_reload_and_are_not_persisted(tmp_path: Path) -> None:
    async with LocalState("n1", data_dir=str(tmp_path)) as local:
        local.add_service(svc("api-registered"))  # through the API: persisted
        local.apply_config([svc("web", ttl=30), svc("db")], [])
        assert set(local.services) == {"api-registered", "web", "db"}
        assert "service:web" in local.definitions
        local.update_ttl("service:web", "passing", "ok")

        # Reload: db dropped, web unchanged (its check keeps its status), cache added.
        local.apply_config([svc("web", ttl=30), svc("cache", 6379)], [])
        assert set(local.services) == {"api-registered", "web", "cache"}
        assert local.checks.states()["service:web"].status == "passing"

        # A changed definition is registered again.
        local.apply_config([svc("web", port=81, ttl=30), svc("cache", 6379)], [])
        assert local.services["web"].port == 81

    async with LocalState("n1", data_dir=str(tmp_path)) as again:
        # Only the API registration survives a restart; the files re-register theirs.
        assert set(again.services) == {"api-registered"}
        assert again.definitions == {}


async def test_config_check_removed_on_reload() -> None:
    async with LocalState("n1") as local:
        check = apb.CheckDefinition(
            name="mem", definition=pb.CheckDefinition(ttl=seconds_duration(5))
        )
        local.apply_config([], [check])
        assert "mem" in local.definitions
        local.apply_config([], [])
        assert "mem" not in local.definitions


async def test_a_config_services_sidecar_is_not_persisted_and_goes_on_reload(
    tmp_path: Path,
) -> None:
    with_sidecar = svc("web")
    with_sidecar.sidecar_service.SetInParent()
    async with LocalState("n1", data_dir=str(tmp_path)) as local:
        local.apply_config([with_sidecar], [])
        assert set(local.services) == {"web", "web-sidecar-proxy"}
    async with LocalState("n1", data_dir=str(tmp_path)) as again:
        # Regression: the sidecar was persisted as an API registration and came
        # back alone after a restart whose files no longer had web.
        assert again.services == {} and again.definitions == {}
        again.apply_config([with_sidecar], [])
        again.apply_config([], [])
        assert again.services == {}
