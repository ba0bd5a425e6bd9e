"""The Go example, built from Debian's packages in GOPATH mode, against a client agent.

``examples/go/build.sh`` generates the Go stubs from protos/ into a temporary
GOPATH (never checked in), vets and builds; the binary then registers,
discovers, watches and uses KV through a real client agent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.polyglot.conftest import ROOT, require_tool, run
from tests.support.procs import AgentProcess

BUILD = ROOT / "examples" / "go" / "build.sh"


@pytest.mark.timeout(420)
def test_go_example_register_discover_watch_kv(client_agent: AgentProcess, tmp_path: Path) -> None:
    for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"):
        require_tool(tool)
    binary = tmp_path / "consul-grpc-go-example"
    started = time.monotonic()
    run([str(BUILD), str(binary), str(tmp_path / "work")], timeout=360)
    print(f"go example generated and built in {time.monotonic() - started:.1f}s")
    # The stubs went to the temporary GOPATH, not into the repository.
    assert not list((ROOT / "examples" / "go").glob("**/*.pb.go"))

    proc = run(
        [str(binary), "-addr", client_agent.grpc_addr, "-timeout", "60s"],
        timeout=90,
    )
    out = proc.stdout
    for step in ("register ok", "discover ok", "watch ok", "kv ok", "deregister ok"):
        assert step in out, out
    assert "on c1 " in out, out
