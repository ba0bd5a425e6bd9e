"""The etcd cluster itself, beside the keys: members, their status, removal, leadership.

``EtcdCluster`` is what the operator endpoints (``/v1/operator/raft/*``,
``/v1/operator/autopilot/health``) need from etcd, as frozen value objects:

- ``members()``: MemberList through the store's own client (linearizable, so
  a removed member is gone from the next answer);
- ``statuses(members)``: Maintenance.Status asked of *each* member on its own
  client URL (the store's channel talks to whichever endpoint it picked), in
  parallel, each bounded by the store's timeout; an unreachable member is a
  ``MemberStatus`` with ``error`` set, never an exception;
- ``remove_member(id)``: MemberRemove;
- ``move_leader(target)``: MoveLeader, which etcd accepts only from the
  current leader, so it is sent on a channel to the leader's client URL.

Every call has a deadline (the store's ``timeout``); etcd's failures come out
as ``StoreError`` and its refusals (a bad member ID, a removal that would
leave too few started members) as ``OperationRefused``, Consul's 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from etcd3aio import EtcdError
from etcd3aio._protobuf import MaintenanceStub, MoveLeaderRequest, StatusRequest

from agent.errors import OperationRefused, StoreError
from agent.store.etcd import EtcdStore

__all__ = ["ClusterMember", "EtcdCluster", "MemberStatus", "member_hex"]

#: Bound on closing a per-member channel.
_CLOSE_TIMEOUT = 1.0


def member_hex(member_id: int) -> str:
    """An etcd member ID as etcdctl prints it (16 hex digits)."""
    return f"{member_id:016x}"


def _host_port(url: str) -> str:
    """``http://127.0.0.1:2380`` -> ``127.0.0.1:2380``."""
    return url.split("://", 1)[-1].rstrip("/")


def _cause(exc: BaseException) -> BaseException:
    """The gRPC error behind an etcd3aio error, when there is one."""
    cause = exc.__cause__
    return cause if isinstance(exc, EtcdError) and cause is not None else exc


@dataclass(frozen=True, slots=True)
class ClusterMember:
    """One etcd member, as MemberList shows it."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    learner: bool

    @property
    def hex_id(self) -> str:
        return member_hex(self.id)

    @property
    def peer_address(self) -> str:
        """The first peer URL as host:port ("" for a member not started yet)."""
        return _host_port(self.peer_urls[0]) if self.peer_urls else ""

    @property
    def client_address(self) -> str:
        return _host_port(self.client_urls[0]) if self.client_urls else ""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """What one member said about itself (Maintenance.Status), or why it did not."""

    member_id: int
    leader: int = 0
    raft_term: int = 0
    raft_index: int = 0
    version: str = ""
    errors: tuple[str, ...] = ()
    #: Set when the member could not be asked (down, or no client URL).
    error: str = ""

    @property
    def healthy(self) -> bool:
        return not self.error and not self.errors and self.leader != 0


class EtcdCluster:
    """Cluster operations over a started ``EtcdStore``."""

    def __init__(self, store: EtcdStore) -> None:
        self.store = store

    @property
    def timeout(self) -> float:
        return self.store.timeout

    def _fail(self, what: str, exc: BaseException) -> StoreError | OperationRefused:
        if isinstance(exc, grpc.aio.AioRpcError):
            details = exc.details() or exc.code().name
            refused = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
            if exc.code() in refused:
                return OperationRefused(f"etcd refused {what}: {details}")
            return StoreError(f"etcd {what} failed: {exc.code().name} {details}")
        if isinstance(exc, TimeoutError):
            return StoreError(f"etcd {what} timed out after {self.timeout:g}s")
        return StoreError(f"etcd {what} failed: {exc}")

    async def members(self) -> list[ClusterMember]:
        cluster = self.store.etcd_client().cluster
        if cluster is None:
            raise StoreError("the etcd store is not started")
        try:
            resp = await cluster.member_list(timeout=self.timeout, max_attempts=1)
        except (EtcdError, grpc.aio.AioRpcError, TimeoutError) as exc:
            raise self._fail("member list", _cause(exc)) from exc
        return [
            ClusterMember(
                id=m.ID,
                name=m.name,
                peer_urls=tuple(m.peerURLs),
                client_urls=tuple(m.clientURLs),
                learner=m.isLearner,
            )
            for m in resp.members
        ]

    async def _status(self, member: ClusterMember) -> MemberStatus:
        if not member.client_urls:
            return MemberStatus(member.id, error="member has not started (no client URL)")
        channel = grpc.aio.insecure_channel(member.client_address)
        try:
            async with asyncio.timeout(self.timeout):
                resp = await MaintenanceStub(channel).Status(StatusRequest())
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            reason = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else "timed out"
            return MemberStatus(member.id, error=reason or "unreachable")
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await channel.close()
        return MemberStatus(
            member_id=member.id,
            leader=resp.leader,
            raft_term=resp.raftTerm,
            raft_index=resp.raftIndex,
            version=resp.version,
            errors=tuple(resp.errors),
        )

    async def statuses(self, members: Sequence[ClusterMember]) -> dict[int, MemberStatus]:
        """Each member's own status, asked in parallel (each call bounded)."""
        found = await asyncio.gather(*(self._status(m) for m in members))
        return {s.member_id: s for s in found}

    async def remove_member(self, member_id: int) -> None:
        cluster = self.store.etcd_client().cluster
        if cluster is None:
            raise StoreError("the etcd store is not started")
        try:
            await cluster.member_remove(member_id, timeout=self.timeout, max_attempts=1)
        except (EtcdError, grpc.aio.AioRpcError, TimeoutError) as exc:
            raise self._fail("member remove", _cause(exc)) from exc

    async def move_leader(self, leader: ClusterMember, target_id: int) -> None:
        """Ask ``leader`` (it must be the current one) to hand over to ``target_id``."""
        if not leader.client_urls:
            raise StoreError(f"etcd leader {leader.name} has no client URL")
        channel = grpc.aio.insecure_channel(leader.client_address)
        try:
            async with asyncio.timeout(self.timeout):
                await MaintenanceStub(channel).MoveLeader(MoveLeaderRequest(targetID=target_id))
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            raise self._fail("move leader", exc) from exc
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await channel.close()
