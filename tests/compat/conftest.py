"""Compatibility suite: unmodified Consul client libraries against real agents.

One dev agent (``dev``) and, for the ACL tests, a second dev agent with ACLs
on (``acl_dev``, default policy deny, management token ``MGMT``), shared by
the three libraries' modules (every test and runner step makes its own
names), so the suite starts two agents, not six. Logs print at the end when
a test failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import AgentProcess, Cluster

MGMT = "11111111-2222-3333-4444-555555555555"
ACL_CONFIG = {
    "acl": {
        "enabled": True,
        "default_policy": "deny",
        "tokens": {"initial_management": MGMT},
    }
}


def _cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("compat-logs"))
    yield c
    c.stop_all()
    if request.session.testsfailed:
        print("\n" + c.dump_logs())


@pytest.fixture(scope="package")
def compat_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from _cluster(request, tmp_path_factory)


@pytest.fixture(scope="package")
def dev(compat_cluster: Cluster) -> AgentProcess:
    """A dev agent (memory store, every port) with script checks on, as the
    libraries' own suites run theirs."""
    return compat_cluster.server("compat-dev", "--dev", "--enable-script-checks")


@pytest.fixture(scope="package")
def acl_dev(compat_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AgentProcess:
    """A dev agent with ACLs on: default deny, management token ``MGMT``."""
    cfg: Path = tmp_path_factory.mktemp("compat-acl") / "acl.json"
    cfg.write_text(json.dumps(ACL_CONFIG))
    return compat_cluster.server("compat-acl", "--dev", "--config-file", str(cfg))
