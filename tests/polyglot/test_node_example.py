"""The Node.js example (@grpc/grpc-js + @grpc/proto-loader on protos/) against a client agent."""

from __future__ import annotations

import pytest

from tests.polyglot.conftest import ROOT, require_tool, run
from tests.support.procs import AgentProcess

EXAMPLE_DIR = ROOT / "examples" / "node"


@pytest.mark.timeout(120)
def test_node_example_register_discover_watch_kv(client_agent: AgentProcess) -> None:
    node = require_tool("node")
    if not (EXAMPLE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("examples/node has no node_modules: run ./scripts/bootstrap", pytrace=False)
    proc = run(
        [node, "example.js", "--addr", client_agent.grpc_addr, "--timeout", "60"],
        cwd=EXAMPLE_DIR,
        timeout=90,
    )
    out = proc.stdout
    for step in ("register ok", "discover ok", "watch ok", "kv ok", "deregister ok"):
        assert step in out, out
    # Discovered through the client agent: the instance lives on the client's node.
    assert "on c1 " in out, out
