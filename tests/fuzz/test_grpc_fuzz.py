"""Fuzz every gRPC method of a client agent and a dev server with random bytes as the request.

Random bytes are mostly no valid protobuf; those that are decode to odd but
well-typed requests. Either way the answer must be a status the API
documents: never UNKNOWN (an exception escaped) or INTERNAL (a crash). Each
listener is tried: the server's RPC address and gRPC address, the client
agent's gRPC address. Membership writes (Join, Heartbeat, Leave) are left
out: a random member joining as a server would be a valid request that
changes the cluster, not hostile input.
"""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.rpc.methods import MethodSpec, all_methods, methods_of
from generated.consul.agent.v1 import agent_pb2 as apb
from tests.fuzz.conftest import FUZZ_EXAMPLES, Targets
from tests.fuzz.support import Usage, assert_back_near, assert_still_serves, log_tracebacks

pytestmark = pytest.mark.timeout(600)

_SKIPPED = {
    "/consul.membership.v1.MembershipService/Join",
    "/consul.membership.v1.MembershipService/Heartbeat",
    "/consul.membership.v1.MembershipService/Leave",
}
_BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
METHODS: list[MethodSpec] = [
    m
    for m in [*all_methods(), *methods_of(apb.DESCRIPTOR.services_by_name["AgentService"])]
    if m.path not in _SKIPPED
]
_PAYLOADS = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"\x0a\x02\xff\xfe",  # field 1, a string that is not UTF-8
            b"\x0a\xff\xff\xff\xff\x0f",  # a length past the end
            b"\x08" + b"\xff" * 10 + b"\x01",  # a varint too long
            b"\x0b" * 200,  # start-group markers
            b"\x12\x46" + b"\x0a\x44" * 35,  # nested messages
            b"\x0a" + b"\x80\x80\x04" + b"a" * 65536,  # a 64 KiB string
            b"\xff" * 200,
        ]
    ),
)


def _call(channel: grpc.Channel, spec: MethodSpec, payload: bytes) -> grpc.StatusCode:
    try:
        if spec.server_streaming:
            stream = channel.unary_stream(spec.path)(payload, timeout=2)
            for _ in stream:
                break
            stream.cancel()  # type: ignore[attr-defined]
            return grpc.StatusCode.OK
        channel.unary_unary(spec.path)(payload, timeout=2)
        return grpc.StatusCode.OK
    except grpc.RpcError as err:
        code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
        if code in _BAD or "metadata size" in (err.details() or ""):  # type: ignore[attr-defined]
            raise AssertionError(
                f"{spec.path} answered {code.name}: {err.details()!r}"  # type: ignore[attr-defined]
                f" for {payload[:40]!r}"
            ) from None
        return code


def _fuzz_method(
    channel: grpc.Channel, spec: MethodSpec, examples: int, codes: dict[str, int]
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(_PAYLOADS)
    def case(payload: bytes) -> None:
        code = _call(channel, spec, payload)
        codes[code.name] = codes.get(code.name, 0) + 1

    case()


def _fuzz(address: str, examples: int) -> dict[str, int]:
    codes: dict[str, int] = {}
    with grpc.insecure_channel(address) as channel:
        for spec in METHODS:
            _fuzz_method(channel, spec, examples, codes)
    return codes


def test_method_table_is_complete() -> None:
    services = {m.service for m in METHODS}
    assert len(services) >= 9  # grows as services are added
    assert len(METHODS) >= 38


@pytest.mark.parametrize("listener", ["server-rpc", "server-grpc", "client-grpc"])
def test_fuzz_grpc_methods(targets: Targets, listener: str) -> None:
    agent = targets.client if listener == "client-grpc" else targets.server
    address = targets.server.rpc_addr if listener == "server-rpc" else agent.grpc_addr
    before = Usage.of(agent)
    codes = _fuzz(address, max(5, FUZZ_EXAMPLES // 30))
    print(f"\n{listener}: {sum(codes.values())} calls, codes {sorted(codes.items())}")
    assert_still_serves(agent)
    assert not log_tracebacks(agent), log_tracebacks(agent)[:5]
    after = assert_back_near(agent, before)
    print(f"{listener}: tasks {before.tasks:.0f} -> {after.tasks:.0f}", end=", ")
    print(f"fds {before.fds} -> {after.fds}")


def test_undecodable_grpc_request_is_invalid_argument_with_short_text_regression(
    targets: Targets,
) -> None:
    # Before: UNKNOWN, "Unexpected <class 'google.protobuf.message.DecodeError'>: ...",
    # and a logged traceback per call.
    for address in (targets.server.rpc_addr, targets.client.grpc_addr):
        with grpc.insecure_channel(address) as channel:
            for _ in range(50):
                try:
                    channel.unary_unary("/consul.kv.v1.KVService/Get")(b"\x00", timeout=5)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
                    details = err.details()  # type: ignore[attr-defined]
                    assert details == "Request decode failed: not a valid GetRequest", details
                else:
                    raise AssertionError("an undecodable request was answered OK")
    for agent in (targets.server, targets.client):
        text = agent.log_path.read_text(errors="replace")
        assert "Traceback" not in text
        assert text.count("rpc request undecodable") <= 2  # once per kind a minute


def test_error_quoting_a_70000_character_id_is_not_a_metadata_overflow_regression(
    targets: Targets,
) -> None:
    # Before: the NOT_FOUND text quoted the whole ID, past gRPC's 16 KiB metadata
    # limit: the caller got RESOURCE_EXHAUSTED "received metadata size exceeds ...".
    request = apb.DeregisterServiceRequest(service_id="x" * 70_000).SerializeToString()
    for address in (targets.server.grpc_addr, targets.client.grpc_addr):
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as caught:
            channel.unary_unary("/consul.agent.v1.AgentService/DeregisterService")(
                request, timeout=5
            )
        err = caught.value
        assert err.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        details = err.details()  # type: ignore[attr-defined]
        assert details.startswith('Unknown service ID "xxx') and details.endswith("(truncated)")
