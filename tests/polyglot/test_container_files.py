"""Dockerfile and compose.yaml, checked without a Docker engine.

``docker-compose config`` (Debian's) validates compose.yaml, hadolint lints the
Dockerfile, and the rest checks what neither can: every agent command in
compose.yaml is accepted by the agent's own parser and config validation, the
demo apps' arguments by the example program's parser, every file the image
needs exists and passes .dockerignore, and the topology is the one the README
promises (3 etcd members, 3 dc1 servers on etcd, a dc2 server joined over the
WAN, 2 dc1 clients, a registering and a discovering demo app).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from agent.cli import build_config, parser
from tests.polyglot.conftest import ROOT, require_tool, run

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE = "consul-grpc:local"
# Real, published etcd release tags (checked when this file was written).
ETCD_IMAGE = re.compile(r"^(quay\.io/coreos/etcd|gcr\.io/etcd-development/etcd):v3\.5\.\d+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml as docker-compose resolves it (anchors and merges applied)."""
    out = run(
        [require_tool("docker-compose"), "-f", str(COMPOSE), "config"], cwd=ROOT, timeout=60
    ).stdout
    data: dict[str, Any] = yaml.safe_load(out)
    return data


def load_example() -> ModuleType:
    path = ROOT / "examples" / "python" / "register_and_watch.py"
    spec = importlib.util.spec_from_file_location("register_and_watch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_validates() -> None:
    run([require_tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, timeout=60)


def test_dockerfile_passes_hadolint() -> None:
    run([require_tool("hadolint"), str(DOCKERFILE)], cwd=ROOT, timeout=60)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_keeps(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also covers what is under it."""
    keep = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            keep = negate
    return keep


def test_dockerfile_structure() -> None:
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms), froms
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    exposed = {p for word, rest in ins if word == "EXPOSE" for p in rest.split()}
    assert {"8300", "8500", "8502"} <= exposed, exposed
    (health,) = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert "CMD" in health
    # Every file COPY'd from the build context exists and passes .dockerignore.
    for word, rest in ins:
        if word != "COPY" or "--from=" in rest:
            continue
        *sources, _dest = shlex.split(rest)
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            path = src.removeprefix("./").rstrip("/")
            assert dockerignore_keeps(path), f"COPY {src}: .dockerignore drops it"
    # The build context leaves out the checkout's bulk.
    for heavy in (".venv", ".git", "node_modules", "tests", "examples/node/node_modules"):
        assert not dockerignore_keeps(heavy), heavy
    # The health check script is one of them, and it checks gRPC health.
    assert "/app/docker/healthcheck.py" in health
    assert "grpc_health" in (ROOT / "docker" / "healthcheck.py").read_text()


def test_compose_topology(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    assert set(services) == {
        "etcd-1", "etcd-2", "etcd-3",
        "dc1-server-1", "dc1-server-2", "dc1-server-3", "dc2-server-1",
        "dc1-client-1", "dc1-client-2",
        "demo-web", "demo-discover",
    }  # fmt: skip
    etcd = [s for name, s in services.items() if name.startswith("etcd-")]
    for s in etcd:
        assert ETCD_IMAGE.match(s["image"]), s["image"]
        members = s["environment"]["ETCD_INITIAL_CLUSTER"].split(",")
        assert len(members) == 3
    agents = {n: s for n, s in services.items() if not n.startswith("etcd-")}
    for name, s in agents.items():
        assert s["image"] == IMAGE, name
        assert Path(s["build"]["context"]).resolve() == ROOT, name


def agent_config(command: list[str]):  # type: ignore[no-untyped-def]
    args = parser().parse_args(command)
    assert args.command == "agent"
    return build_config(args)


def host_of(address: str) -> str:
    return address.rpartition(":")[0]


def test_compose_agent_commands_are_valid(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    configs = {
        name: agent_config(s["command"])
        for name, s in services.items()
        if name.startswith(("dc1-", "dc2-"))
    }
    for name, cfg in configs.items():
        assert cfg.node_name == name
        if cfg.server:
            # The RPC address others dial is the container's own name.
            assert host_of(cfg.rpc_addr) == name, cfg.rpc_addr
    for i in (1, 2, 3):
        cfg = configs[f"dc1-server-{i}"]
        assert (cfg.server, cfg.datacenter, cfg.store) == (True, "dc1", "etcd")
        assert sorted(host_of(e) for e in cfg.etcd_endpoints) == ["etcd-1", "etcd-2", "etcd-3"]
    dc2 = configs["dc2-server-1"]
    assert (dc2.server, dc2.datacenter, dc2.store) == (True, "dc2", "memory")
    assert dc2.retry_join_wan == ("dc1-server-1:8300",)
    for i in (1, 2):
        cfg = configs[f"dc1-client-{i}"]
        assert (cfg.server, cfg.datacenter) == (False, "dc1")
        assert sorted(host_of(a) for a in cfg.retry_join) == [
            "dc1-server-1", "dc1-server-2", "dc1-server-3",
        ]  # fmt: skip
        assert cfg.grpc_addr == "0.0.0.0:8502"


def test_compose_demo_apps(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    example = load_example()
    dockerfile = DOCKERFILE.read_text()
    assert "COPY examples/python ./examples/python" in dockerfile  # WORKDIR /app
    modes = {}
    for name in ("demo-web", "demo-discover"):
        s = services[name]
        assert s["entrypoint"] == ["python", "/app/examples/python/register_and_watch.py"]
        # Beside its local agent: the agent's network namespace, 127.0.0.1:8502.
        agent = s["network_mode"].removeprefix("service:")
        assert agent in ("dc1-client-1", "dc1-client-2"), s["network_mode"]
        args = example.parse_args(s["command"])
        assert args.addr == "127.0.0.1:8502"
        assert args.name == "web" and args.changes == 0 and args.timeout == 0
        modes[name] = (agent, args.no_register)
    assert modes["demo-web"] == ("dc1-client-1", False)  # registers itself with a TTL check
    assert modes["demo-discover"] == ("dc1-client-2", True)  # discovers it elsewhere
