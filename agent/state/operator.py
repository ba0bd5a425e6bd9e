"""Operator state on the store: the autopilot configuration, and the catalog's usage.

**Autopilot configuration** is one key, ``operator/autopilot``, holding
Consul's ``AutopilotConfiguration`` as JSON (the store entry's indexes are
its ``CreateIndex``/``ModifyIndex``). Until it is first written, reads show
Consul's defaults (``CleanupDeadServers`` true, ``LastContactThreshold``
"200ms", ``MaxTrailingLogs`` 250, ``ServerStabilizationTime`` "10s", the
rest zero). A write replaces the whole document, as Consul's PUT does: a
field left out of the body is its zero value, not its default (``consul
operator autopilot set-config`` reads, changes and writes back). Keys match
case-insensitively; durations are Go strings (``"5s"``) or numbers of
nanoseconds, as Consul's ``ReadableDuration`` decodes them.

**Usage** (``/v1/operator/usage``) counts services, instances (by kind) and
nodes. Counting needs one pass over every instance, so the result is kept
with the catalog indexes it was computed at (``idx/services/``,
``idx/nodes/``): a call reads those two keys and recounts only when one
moved, and concurrent callers share one recount. With 50,000 instances and
a dashboard polling every second, the catalog is scanned once per catalog
change, not once per call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from agent.durations import format_duration, parse_duration
from agent.errors import ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.state.catalog import NODESVC
from agent.store import Compare, Put, Store
from generated.consul.common.v1 import types_pb2 as pb

__all__ = [
    "AUTOPILOT_DEFAULTS",
    "AUTOPILOT_KEY",
    "CONNECT_KINDS",
    "AutopilotConfigs",
    "UsageCounter",
    "decode_autopilot",
]

AUTOPILOT_KEY = "operator/autopilot"
_MAX_TRIES = 8

#: Consul's defaults (agent/config/default.go), as its API shows them.
AUTOPILOT_DEFAULTS: dict[str, Any] = {
    "CleanupDeadServers": True,
    "LastContactThreshold": "200ms",
    "MaxTrailingLogs": 250,
    "MinQuorum": 0,
    "ServerStabilizationTime": "10s",
    "RedundancyZoneTag": "",
    "DisableUpgradeMigration": False,
    "UpgradeVersionTag": "",
}
_BOOLS = ("CleanupDeadServers", "DisableUpgradeMigration")
_DURATIONS = ("LastContactThreshold", "ServerStabilizationTime")
_UINTS = ("MaxTrailingLogs", "MinQuorum")
_STRINGS = ("RedundancyZoneTag", "UpgradeVersionTag")
_FIELDS = {k.lower(): k for k in (*AUTOPILOT_DEFAULTS, "CreateIndex", "ModifyIndex")}

#: The kinds Consul counts in ``ConnectServiceInstances``.
CONNECT_KINDS = (
    "api-gateway",
    "connect-native",
    "connect-proxy",
    "ingress-gateway",
    "mesh-gateway",
    "terminating-gateway",
)


def _duration(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidArgument(f"Error parsing autopilot config: {name}: not a duration")
    if isinstance(value, str):
        return format_duration(parse_duration(value))
    if value < 0:
        raise InvalidArgument(f"Error parsing autopilot config: {name}: negative")
    return format_duration(value / 1e9)  # a bare number is nanoseconds, as in Go


def decode_autopilot(doc: object) -> dict[str, Any]:
    """Consul's AutopilotConfiguration from a request body; InvalidArgument if bad."""
    if not isinstance(doc, dict):
        raise InvalidArgument("Error parsing autopilot config: body must be a JSON object")
    out: dict[str, Any] = {
        **{k: False for k in _BOOLS},
        **{k: "0s" for k in _DURATIONS},
        **{k: 0 for k in _UINTS},
        **{k: "" for k in _STRINGS},
    }
    for raw_key, value in doc.items():
        name = _FIELDS.get(str(raw_key).lower())
        if name is None or name in ("CreateIndex", "ModifyIndex") or value is None:
            continue
        try:
            if name in _BOOLS:
                if not isinstance(value, bool):
                    raise InvalidArgument(f"{name}: not a boolean")
                out[name] = value
            elif name in _DURATIONS:
                out[name] = _duration(name, value)
            elif name in _UINTS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidArgument(f"{name}: not an unsigned integer")
                out[name] = value
            else:
                if not isinstance(value, str):
                    raise InvalidArgument(f"{name}: not a string")
                out[name] = value
        except InvalidArgument as exc:
            message = exc.message.removeprefix("Error parsing autopilot config: ")
            raise InvalidArgument(f"Error parsing autopilot config: {message}") from None
    return out


class AutopilotConfigs:
    """The autopilot configuration; ``reader`` may be a local replica of ``store``."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store

    async def get(self, opts: QueryOpts) -> Read[dict[str, Any]]:
        async def read() -> Read[dict[str, Any]]:
            entry, store_index = await self.reader.get(AUTOPILOT_KEY)
            if entry is None:
                shown = {**AUTOPILOT_DEFAULTS, "CreateIndex": 0, "ModifyIndex": 0}
                return Read(shown, store_index or 1, store_index)
            doc: dict[str, Any] = {**AUTOPILOT_DEFAULTS, **json.loads(entry.value)}
            doc["CreateIndex"], doc["ModifyIndex"] = entry.create_index, entry.modify_index
            return Read(doc, entry.modify_index, store_index)

        return await blocking_query(self.reader, opts, [AUTOPILOT_KEY], read)

    async def set(self, doc: object, cas: int | None = None) -> tuple[bool, int]:
        """Replace the configuration; (applied, index). A lost CAS answers False."""
        config = decode_autopilot(doc)
        raw = json.dumps(config, sort_keys=True).encode()
        for _ in range(_MAX_TRIES):
            current, index = await self.store.get(AUTOPILOT_KEY)
            at = current.modify_index if current else 0
            if cas is not None and at != cas:
                return False, index
            applied, index = await self.store.txn(
                [Compare(AUTOPILOT_KEY, at)], [Put(AUTOPILOT_KEY, raw)]
            )
            if applied:
                await reader_caught_up(self.reader, index)
                return True, index
            if cas is not None:
                return False, index
        raise ConsulError("autopilot configuration: too much contention")


@dataclass
class _Counted:
    at: tuple[int, int] = (-1, -1)
    usage: dict[str, Any] = field(default_factory=dict)
    index: int = 1


class UsageCounter:
    """Consul's ServiceUsage of the catalog, recounted only when the catalog moved."""

    def __init__(self, store: Store) -> None:
        self.reader = store
        self._counted = _Counted()
        self._lock = asyncio.Lock()
        #: How many full counts were made (tests check the cache holds).
        self.recounts = 0

    async def _marks(self) -> tuple[tuple[int, int], int]:
        services, store_index = await self.reader.get(keys.IDX_SERVICES)
        nodes, _ = await self.reader.get(keys.IDX_NODES)
        at = (services.modify_index if services else 0, nodes.modify_index if nodes else 0)
        return at, max(1, *at) if any(at) else max(1, store_index)

    async def usage(self) -> Read[dict[str, Any]]:
        at, index = await self._marks()
        counted = self._counted
        if counted.at == at:
            return Read(counted.usage, counted.index, index)
        async with self._lock:  # one recount at a time; late callers reuse it
            at, index = await self._marks()
            if self._counted.at != at:
                self._counted = _Counted(at, await self._count(), index)
                self.recounts += 1
            return Read(self._counted.usage, self._counted.index, index)

    async def _count(self) -> dict[str, Any]:
        instances, _ = await self.reader.range(NODESVC)
        nodes, _ = await self.reader.range(keys.NODES)
        names: set[str] = set()
        connect = dict.fromkeys(CONNECT_KINDS, 0)
        billable = 0
        for entry in instances:
            svc = pb.Service.FromString(entry.value)
            names.add(svc.name)
            if svc.kind in connect:
                connect[svc.kind] += 1
            elif not svc.kind and svc.name != "consul":
                billable += 1
        return {
            "Services": len(names),
            "ServiceInstances": len(instances),
            "ConnectServiceInstances": connect,
            "BillableServiceInstances": billable,
            "Nodes": len(nodes),
        }
