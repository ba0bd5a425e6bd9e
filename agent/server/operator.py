"""The OperatorService endpoint: Consul's ``/v1/operator`` raft and autopilot API on our stores.

**What a raft peer is here.** Consul's ``Servers`` are its raft peers: the
processes that hold the replicated log, vote, and of which one leads. In
consul-grpc the replicated log is the store, so:

- with the **etcd store** the peers are the etcd cluster's members
  (MemberList through the store's client). ``ID`` is the member ID as etcdctl
  prints it (16 hex digits), ``Node`` its etcd name, ``Address`` its first
  peer URL (host:port), ``Leader`` the member every reachable member names as
  leader (Maintenance.Status asked of each), ``Voter`` false for a learner,
  ``LastIndex`` its raft index. ``raft/peer`` removal is etcd MemberRemove and
  ``raft/transfer-leader`` etcd MoveLeader, so the IDs ``list-peers`` shows
  are the ones they take.
- with the **memory store** (a dev agent) there is one peer, this server:
  its node ID, node name and RPC address, leader and voter.

The consul-grpc server agents are not raft peers (any number of them share
one etcd cluster, and one of them holds our own leader election, which runs
the reconciler). Consul users want to see them too, so every answer carries
them beside the peers: ``ConsulServers`` ([{Node, Address, Leader, Status}],
Leader = our election's leader, Status from the LAN membership). Clients
that decode Consul's shapes ignore the extra key.

**Autopilot.** Health and state are computed, never stored: each peer is
healthy when it answered its status, reports no errors and knows a leader;
the whole is healthy when every peer is and every consul-grpc server is
alive; ``FailureTolerance`` is healthy voters minus a quorum. Autopilot does
nothing by itself here (etcd has no autopilot); its configuration is kept
for the clients that read and write it. ``LastContact`` is not measured for
etcd members and shows ``0s``; ``StableSince`` is when this server first saw
the peer healthy without a break.

Errors are Consul's texts where Consul has one (an unknown peer, a single
peer that cannot hand over its leadership); etcd's own refusals pass through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.convert import query_opts
from agent.errors import InvalidArgument, OperationRefused
from agent.state.operator import AUTOPILOT_KEY, AutopilotConfigs, UsageCounter
from agent.store import Store
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.operator.v1 import operator_pb2 as opb

__all__ = ["ClusterAdmin", "Identity", "OperatorEndpoint", "Peer"]

#: hashicorp/raft's protocol version Consul reports for its servers.
PROTOCOL_VERSION = "3"

_STATUS = {
    mpb.MEMBER_STATUS_ALIVE: "alive",
    mpb.MEMBER_STATUS_LEFT: "left",
    mpb.MEMBER_STATUS_FAILED: "failed",
}


class _Member(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def hex_id(self) -> str: ...
    @property
    def peer_address(self) -> str: ...
    @property
    def learner(self) -> bool: ...
    @property
    def client_urls(self) -> tuple[str, ...]: ...


class _Status(Protocol):
    @property
    def member_id(self) -> int: ...
    @property
    def leader(self) -> int: ...
    @property
    def raft_term(self) -> int: ...
    @property
    def raft_index(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def healthy(self) -> bool: ...


class ClusterAdmin(Protocol):
    """What this endpoint needs of the etcd cluster (``agent.store.etcd_cluster``)."""

    async def members(self) -> Sequence[_Member]: ...
    async def statuses(self, members: Sequence[Any]) -> dict[int, Any]: ...
    async def remove_member(self, member_id: int) -> None: ...
    async def move_leader(self, leader: Any, target_id: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Peer:
    """One raft peer as the answers show it."""

    id: str
    node: str
    address: str
    leader: bool
    voter: bool
    last_index: int
    last_term: int
    version: str
    reachable: bool
    healthy: bool


@dataclass(frozen=True, slots=True)
class Identity:
    """This server: what the memory store's single peer is."""

    node_id: str
    node_name: str
    address: Callable[[], str]
    version: str


def _parse_member_id(text: str) -> int | None:
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(round(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OperatorEndpoint:
    """``cluster`` is None on the memory store; ``leader`` is our leader election."""

    def __init__(
        self,
        *,
        store: Store,
        cluster: ClusterAdmin | None,
        me: Identity,
        leader: Any,
        servers: Callable[[], Sequence[mpb.Member]],
        autopilot: AutopilotConfigs,
        usage: UsageCounter,
        meta: Callable[[int], qpb.QueryMeta],
        datacenter: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.me = me
        self.leader = leader
        self.servers = servers
        self.autopilot = autopilot
        self.usage_counter = usage
        self._meta = meta
        self.datacenter = datacenter
        self._clock = clock
        #: Peer ID -> when it was first seen healthy without a break.
        self._stable: dict[str, float] = {}

    # ----- peers ---------------------------------------------------------

    async def _etcd_peers(self) -> tuple[list[Peer], list[Any], int]:
        assert self.cluster is not None
        members = list(await self.cluster.members())
        statuses = await self.cluster.statuses(members)
        votes: dict[int, int] = {}
        for s in statuses.values():
            if s.leader:
                votes[s.leader] = votes.get(s.leader, 0) + 1
        leader = max(votes, key=lambda k: votes[k]) if votes else 0
        peers = []
        for m in members:
            s = statuses.get(m.id)
            reachable = s is not None and not s.error
            peers.append(
                Peer(
                    id=m.hex_id,
                    node=m.name or "(unknown)",
                    address=m.peer_address,
                    leader=m.id == leader,
                    voter=not m.learner,
                    last_index=s.raft_index if s else 0,
                    last_term=s.raft_term if s else 0,
                    version=s.version if s else "",
                    reachable=reachable,
                    healthy=bool(s and s.healthy),
                )
            )
        index = max((p.last_index for p in peers), default=0)
        return peers, members, index

    async def _peers(self) -> tuple[list[Peer], list[Any], int]:
        if self.cluster is not None:
            return await self._etcd_peers()
        _, index = await self.store.get(AUTOPILOT_KEY)
        me = Peer(
            id=self.me.node_id,
            node=self.me.node_name,
            address=self.me.address(),
            leader=True,
            voter=True,
            last_index=index,
            last_term=1,
            version=self.me.version,
            reachable=True,
            healthy=True,
        )
        return [me], [], index

    def _consul_servers(self) -> list[opb.ConsulServer]:
        out = []
        for m in self.servers():
            if m.role != mpb.MEMBER_ROLE_SERVER:
                continue
            out.append(
                opb.ConsulServer(
                    node=m.name,
                    address=m.address,
                    leader=m.name == self.leader.leader_name,
                    status=_STATUS.get(m.status, "none"),
                )
            )
        return sorted(out, key=lambda s: s.node)

    async def RaftConfiguration(
        self, req: opb.RaftConfigurationRequest
    ) -> opb.RaftConfigurationResponse:
        query_opts(req.options)  # validates; the configuration does not block
        peers, _, index = await self._peers()
        return opb.RaftConfigurationResponse(
            meta=self._meta(index),
            # A single in-memory server's configuration never changed: its
            # index is 0, as a Consul dev agent answers (py-consul's own test
            # expects it). On etcd, the etcd members' raft index.
            index=0 if self.cluster is None else max(1, index),
            servers=[
                opb.RaftServer(
                    id=p.id,
                    node=p.node,
                    address=p.address,
                    leader=p.leader,
                    protocol_version=PROTOCOL_VERSION,
                    voter=p.voter,
                    last_index=p.last_index,
                )
                for p in peers
            ],
            consul_servers=self._consul_servers(),
        )

    async def RaftRemovePeer(self, req: opb.RaftRemovePeerRequest) -> opb.RaftRemovePeerResponse:
        if not req.id and not req.address:
            raise InvalidArgument(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer"
                " to remove"
            )
        peers, _, _ = await self._peers()
        if req.id:
            wanted = _parse_member_id(req.id) if self.cluster is not None else None
            found = [
                p
                for p in peers
                if p.id == req.id or (wanted is not None and int(p.id, 16) == wanted)
            ]
            missing = f"id {json.dumps(req.id)} was not found in the Raft configuration"
        else:
            found = [p for p in peers if p.address == req.address]
            missing = f"address {json.dumps(req.address)} was not found in the Raft configuration"
        if not found:
            raise OperationRefused(missing)
        if len(peers) == 1:
            raise OperationRefused(
                "need at least one voter in configuration: refusing to remove the only"
                f" {'etcd member' if self.cluster is not None else 'server (memory store)'}"
            )
        assert self.cluster is not None  # more than one peer: etcd
        await self.cluster.remove_member(int(found[0].id, 16))
        return opb.RaftRemovePeerResponse()

    async def RaftTransferLeader(
        self, req: opb.RaftTransferLeaderRequest
    ) -> opb.RaftTransferLeaderResponse:
        peers, members, _ = await self._peers()
        leader = next((p for p in peers if p.leader), None)
        if self.cluster is None or len(peers) < 2:
            raise OperationRefused("cannot transfer leadership: cannot find peer")
        if leader is None:
            raise OperationRefused("cannot transfer leadership: no etcd member is the leader now")
        if req.id:
            wanted = _parse_member_id(req.id)
            target = next(
                (p for p in peers if wanted is not None and int(p.id, 16) == wanted), None
            )
            if target is None:
                raise OperationRefused(
                    f"cannot transfer leadership: id {json.dumps(req.id)} was not found in the"
                    " Raft configuration"
                )
            if target.leader:
                raise OperationRefused(
                    "cannot transfer leadership: the server is already the leader"
                )
            if not target.voter:
                raise OperationRefused("cannot transfer leadership: the server is not a voter")
        else:
            target = next((p for p in peers if p.voter and not p.leader and p.healthy), None)
            if target is None:
                raise OperationRefused("cannot transfer leadership: cannot find peer")
        leader_member = next(m for m in members if m.hex_id == leader.id)
        await self.cluster.move_leader(leader_member, int(target.id, 16))
        return opb.RaftTransferLeaderResponse(success=True)

    # ----- autopilot -----------------------------------------------------

    async def AutopilotGetConfiguration(
        self, req: opb.AutopilotGetConfigurationRequest
    ) -> opb.AutopilotGetConfigurationResponse:
        read = await self.autopilot.get(query_opts(req.options))
        return opb.AutopilotGetConfigurationResponse(
            meta=self._meta(read.index), configuration_json=json.dumps(read.value).encode()
        )

    async def AutopilotSetConfiguration(
        self, req: opb.AutopilotSetConfigurationRequest
    ) -> opb.AutopilotSetConfigurationResponse:
        try:
            doc = json.loads(req.configuration_json or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidArgument(f"Error parsing autopilot config: {exc}") from None
        applied, index = await self.autopilot.set(doc, req.cas if req.has_cas else None)
        return opb.AutopilotSetConfigurationResponse(applied=applied, index=index)

    def _stable_since(self, peer: Peer, now: float) -> float:
        if not peer.healthy:
            self._stable.pop(peer.id, None)
            return now
        return self._stable.setdefault(peer.id, now)

    async def _health(self) -> tuple[dict[str, Any], list[Peer], int]:
        peers, _, index = await self._peers()
        now = self._clock()
        servers = self._consul_servers()
        voters = [p for p in peers if p.voter]
        healthy_voters = sum(1 for p in voters if p.healthy)
        quorum = len(voters) // 2 + 1
        healthy = all(p.healthy for p in peers) and all(s.status == "alive" for s in servers)
        doc: dict[str, Any] = {
            "Healthy": healthy,
            "FailureTolerance": max(0, healthy_voters - quorum),
            "Servers": [
                {
                    "ID": p.id,
                    "Name": p.node,
                    "Address": p.address,
                    "SerfStatus": "alive" if p.reachable else "failed",
                    "Version": p.version,
                    "Leader": p.leader,
                    "LastContact": "0s",
                    "LastTerm": p.last_term,
                    "LastIndex": p.last_index,
                    "Healthy": p.healthy,
                    "Voter": p.voter,
                    "StableSince": _rfc3339(self._stable_since(p, now)),
                }
                for p in peers
            ],
            "ConsulServers": [
                {"Node": s.node, "Address": s.address, "Leader": s.leader, "Status": s.status}
                for s in servers
            ],
        }
        return doc, peers, index

    async def AutopilotHealth(self, req: opb.AutopilotHealthRequest) -> opb.AutopilotHealthResponse:
        query_opts(req.options)
        doc, _, index = await self._health()
        return opb.AutopilotHealthResponse(
            meta=self._meta(index), healthy=doc["Healthy"], health_json=json.dumps(doc).encode()
        )

    async def AutopilotState(self, req: opb.AutopilotStateRequest) -> opb.AutopilotStateResponse:
        query_opts(req.options)
        health, peers, index = await self._health()
        voters = [p for p in peers if p.voter]
        quorum = len(voters) // 2 + 1
        by_id = {s["ID"]: s for s in health["Servers"]}
        leader = next((p.id for p in peers if p.leader), "")
        doc = {
            "Healthy": health["Healthy"],
            "FailureTolerance": health["FailureTolerance"],
            "OptimisticFailureTolerance": max(0, len(voters) - quorum),
            "Servers": {
                p.id: {
                    "ID": p.id,
                    "Name": p.node,
                    "Address": p.address,
                    "NodeStatus": "alive" if p.reachable else "failed",
                    "Version": p.version,
                    "LastContact": "0s",
                    "LastTerm": p.last_term,
                    "LastIndex": p.last_index,
                    "Healthy": p.healthy,
                    "StableSince": by_id[p.id]["StableSince"],
                    "Status": "leader" if p.leader else ("voter" if p.voter else "non-voter"),
                    "Meta": {},
                    "NodeType": "voter" if p.voter else "read-replica",
                    "ReadReplica": False,
                }
                for p in peers
            },
            "Leader": leader,
            "Voters": [p.id for p in voters],
            "ReadReplicas": [],
            "ConsulServers": health["ConsulServers"],
        }
        return opb.AutopilotStateResponse(
            meta=self._meta(index), state_json=json.dumps(doc).encode()
        )

    # ----- usage ---------------------------------------------------------

    async def Usage(self, req: opb.UsageRequest) -> opb.UsageResponse:
        query_opts(req.options)
        read = await self.usage_counter.usage()
        doc = {self.datacenter: read.value}
        return opb.UsageResponse(meta=self._meta(read.index), usage_json=json.dumps(doc).encode())
