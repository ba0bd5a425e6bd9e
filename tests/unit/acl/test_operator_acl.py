"""Operator RPCs need operator:read to read and operator:write to change, as Consul's."""

from __future__ import annotations

from typing import Any

import pytest

from agent.acl.authorizer import Authorizer
from agent.acl.enforce import Gate
from agent.acl.rules import parse_rules
from agent.errors import PermissionDenied
from generated.consul.operator.v1 import operator_pb2 as opb

SVC = "/consul.operator.v1.OperatorService/"


class ReadOnly:
    enabled = True

    async def resolve(self, token: str) -> Authorizer:
        return Authorizer(parse_rules('operator = "read"'), default_allow=False, accessor="acc")


class Calls:
    def __init__(self, response: Any) -> None:
        self.count = 0
        self.response = response

    async def __call__(self, request: Any) -> Any:
        self.count += 1
        return self.response


async def test_reads_pass_with_operator_read_and_writes_are_refused_first() -> None:
    g = Gate(ReadOnly())  # type: ignore[arg-type]
    conf = Calls(opb.RaftConfigurationResponse())
    await g.call(SVC + "RaftConfiguration", conf, opb.RaftConfigurationRequest())
    assert conf.count == 1
    for name, req, resp in (
        ("RaftRemovePeer", opb.RaftRemovePeerRequest(id="x"), opb.RaftRemovePeerResponse()),
        ("RaftTransferLeader", opb.RaftTransferLeaderRequest(), opb.RaftTransferLeaderResponse()),
        (
            "AutopilotSetConfiguration",
            opb.AutopilotSetConfigurationRequest(),
            opb.AutopilotSetConfigurationResponse(),
        ),
    ):
        write = Calls(resp)
        with pytest.raises(PermissionDenied, match="operator:write"):
            await g.call(SVC + name, write, req)
        assert write.count == 0


async def test_every_operator_method_is_checked() -> None:
    from agent.acl.enforce import PRE

    methods = opb.DESCRIPTOR.services_by_name["OperatorService"].methods
    assert {SVC + m.name for m in methods} <= set(PRE)
