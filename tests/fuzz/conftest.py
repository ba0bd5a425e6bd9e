"""The fuzz suite's targets: a dev server and a client agent joined to it (real processes).

Both live for the whole module, so the fuzz runs against agents that have
already taken every earlier case; their logs print when a test fails. The
number of examples is ``FUZZ_EXAMPLES`` (per HTTP agent; the gRPC fuzz runs a
tenth of it per method and listener): the CI default keeps the suite near a
minute on two cores, a larger value runs it longer by hand::

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q tests/fuzz
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import AgentProcess, Cluster

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))


@dataclass
class Targets:
    server: AgentProcess
    client: AgentProcess
    cluster: Cluster


@pytest.fixture(scope="module")
def targets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Targets]:
    cluster = Cluster(Path(tmp_path_factory.mktemp("fuzz-logs")))
    failed_before = request.session.testsfailed
    try:
        server = cluster.server("fuzz-dev", "--dev")
        client = cluster.client("fuzz-client", "--retry-join", server.rpc_addr)
        yield Targets(server, client, cluster)
    finally:
        cluster.stop_all()
        if request.session.testsfailed > failed_before:
            print("\n" + cluster.dump_logs())
