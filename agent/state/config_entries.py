"""Configuration entries (Consul's ``/v1/config``) on the store.

One key per entry, ``config/<kind>/<name>``, holding the entry's JSON as the
API shows it (without ``CreateIndex``/``ModifyIndex``, which are the store
entry's own indexes), and one index key per kind, ``idx/config/<kind>/``,
written with every change of that kind, so a blocking list is woken by a
delete too and an entry's read after its delete has an index that moved.

Validation is Consul's for the fields every kind shares (``structs``'s
``MakeConfigEntry`` and ``validateConfigEntryMeta``): a known ``Kind``; a
``Name`` (``global`` for ``proxy-defaults``, ``mesh`` for ``mesh``); ``Meta``
of at most 64 pairs, keys of at most 128 characters and not starting with
``consul-``, values of at most 512. The top-level keys are matched without
regard to case or ``_`` (``kind``, ``Kind``), as Consul's decoder does, and
shown in Consul's casing; what a kind puts below them is kept as written.
"""

from __future__ import annotations

import json
from typing import Any

from agent.errors import ConsulError, InvalidArgument
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.store import Compare, Delete, Put, Store

__all__ = ["KINDS", "ConfigEntries", "normalize_entry"]

KINDS = frozenset(
    {
        "service-defaults",
        "proxy-defaults",
        "service-router",
        "service-splitter",
        "service-resolver",
        "ingress-gateway",
        "terminating-gateway",
        "service-intentions",
        "mesh",
        "exported-services",
        "sameness-group",
        "api-gateway",
        "bound-api-gateway",
        "inline-certificate",
        "file-system-certificate",
        "http-route",
        "tcp-route",
        "jwt-provider",
    }
)
#: Kinds with one fixed name.
FIXED_NAMES = {"proxy-defaults": "global", "mesh": "mesh"}
PREFIX = "config/"
IDX_PREFIX = "idx/config/"
MAX_ENTRY_SIZE = 512 * 1024
META_MAX_PAIRS = 64
META_MAX_KEY = 128
META_MAX_VALUE = 512
_MAX_TRIES = 8

#: Consul's casing of the top-level fields every kind may carry.
_COMMON = {
    "kind": "Kind",
    "name": "Name",
    "namespace": "Namespace",
    "partition": "Partition",
    "meta": "Meta",
    "createindex": "CreateIndex",
    "modifyindex": "ModifyIndex",
}


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidArgument(f"invalid config entry kind: {kind}")


def normalize_entry(doc: Any) -> dict[str, Any]:
    """The entry in Consul's shape, validated; InvalidArgument otherwise."""
    if not isinstance(doc, dict):
        raise InvalidArgument("Request decoding failed: config entry must be a JSON object")
    entry: dict[str, Any] = {}
    for key, value in doc.items():
        field = _COMMON.get(_fold(str(key)), str(key))
        if field in ("CreateIndex", "ModifyIndex"):
            continue
        entry[field] = value
    kind = entry.get("Kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidArgument("Request decoding failed: Kind value in payload is missing")
    check_kind(kind)
    name = entry.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"Name is required for {kind} config entries")
    fixed = FIXED_NAMES.get(kind)
    if fixed is not None and name != fixed:
        raise InvalidArgument(f"invalid name ({name!r}), only {fixed!r} is supported")
    meta = entry.get("Meta")
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise InvalidArgument("Meta must be a map of strings")
        if len(meta) > META_MAX_PAIRS:
            raise InvalidArgument(f"Meta exceeds maximum element count {META_MAX_PAIRS}")
        for k, v in meta.items():
            if len(k) > META_MAX_KEY:
                raise InvalidArgument(f"Meta key {k!r} exceeds maximum length {META_MAX_KEY}")
            if k.startswith("consul-"):
                raise InvalidArgument(f"Meta key {k!r} uses reserved prefix 'consul-'")
            if len(v) > META_MAX_VALUE:
                raise InvalidArgument(f"Meta value for key {k!r} exceeds maximum length")
    return entry


def _key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}/{keys.q(name)}"


class ConfigEntries:
    """Config entry reads and writes; ``reader`` may be a local replica of ``store``."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store

    async def apply(self, doc: Any, cas: int | None = None) -> tuple[bool, int]:
        """Create or replace; (applied, index). A lost CAS answers applied False."""
        entry = normalize_entry(doc)
        try:
            raw = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, RecursionError) as exc:
            raise InvalidArgument(f"Request decoding failed: {exc}") from None
        if len(raw) > MAX_ENTRY_SIZE:
            raise InvalidArgument(f"config entry exceeds {MAX_ENTRY_SIZE} bytes")
        kind, name = entry["Kind"], entry["Name"]
        key = _key(kind, name)
        for _ in range(_MAX_TRIES):
            current, _ = await self.store.get(key)
            at = current.modify_index if current else 0
            if cas is not None and at != cas:
                return False, at
            ops = [Put(key, raw), Put(f"{IDX_PREFIX}{kind}/", b"")]
            applied, index = await self.store.txn([Compare(key, at)], ops)
            if applied:
                await reader_caught_up(self.reader, index)
                return True, index
        raise ConsulError(f"config entry apply: too much contention on {kind}/{name}")

    async def delete(self, kind: str, name: str, cas: int | None = None) -> tuple[bool, int]:
        """Remove; (deleted, index). Deleting an absent entry succeeds (as Consul)."""
        check_kind(kind)
        key = _key(kind, name)
        current, index = await self.store.get(key)
        at = current.modify_index if current else 0
        if cas is not None and at != cas:
            return False, index
        if current is None:
            return True, index
        applied, index = await self.store.txn(
            [Compare(key, at)], [Delete(key), Put(f"{IDX_PREFIX}{kind}/", b"")]
        )
        if applied:
            await reader_caught_up(self.reader, index)
        return applied, index

    @staticmethod
    def _shown(raw: bytes, create: int, modify: int) -> dict[str, Any]:
        entry: dict[str, Any] = json.loads(raw)
        entry["CreateIndex"] = create
        entry["ModifyIndex"] = modify
        return entry

    async def get(self, opts: QueryOpts, kind: str, name: str) -> Read[dict[str, Any] | None]:
        check_kind(kind)
        key = _key(kind, name)
        idx = f"{IDX_PREFIX}{kind}/"

        async def read() -> Read[dict[str, Any] | None]:
            entry, store_index = await self.reader.get(key)
            if entry is not None:
                shown = self._shown(entry.value, entry.create_index, entry.modify_index)
                return Read(shown, entry.modify_index, store_index)
            marker, _ = await self.reader.get(idx)
            return Read(None, (marker.modify_index if marker else store_index) or 1, store_index)

        return await blocking_query(self.reader, opts, [key, idx], read)

    async def list(self, opts: QueryOpts, kind: str) -> Read[list[dict[str, Any]]]:
        check_kind(kind)
        idx = f"{IDX_PREFIX}{kind}/"

        async def read() -> Read[list[dict[str, Any]]]:
            entries, store_index = await self.reader.range(f"{PREFIX}{kind}/")
            marker, _ = await self.reader.get(idx)
            shown = [self._shown(e.value, e.create_index, e.modify_index) for e in entries]
            index = (marker.modify_index if marker else store_index) or 1
            return Read(shown, index, store_index)

        return await blocking_query(self.reader, opts, [idx], read)
