"""Network coordinates of a datacenter's nodes on the store (Consul's
``Coordinates`` table).

One key per node and segment, ``coord/<node>/<segment>``, holding the Coord
JSON Consul shows (``{"Vec", "Error", "Adjustment", "Height"}``), and one
index key, ``idx/coord/``, moved by every batch and by a node's removal (the
catalog deletes ``coord/<node>/`` with the node), so a blocking list wakes on
both.

Writes come only in batches (``batch_update``, called by the servers'
``CoordinateBatcher`` once per update period): the coordinates of nodes the
catalog knows, and only those that differ from what is stored, in
transactions of at most ``batch_size`` puts. Consul also skips coordinates of
unknown nodes (``CoordinateBatchUpdate``), which keeps a deregistered node
from coming back through a late update.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from agent.coordinate import Coordinate, coord_json
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query, reader_caught_up
from agent.store import Entry, Put, Store

__all__ = ["CoordinateState", "NodeCoordinate", "load_coordinate"]


@dataclass(frozen=True, slots=True)
class NodeCoordinate:
    """One node's coordinate in one segment."""

    node: str
    segment: str
    coord: Coordinate


def _encode(coord: Coordinate) -> bytes:
    return json.dumps(coord_json(coord), separators=(",", ":")).encode()


def load_coordinate(entry: Entry) -> NodeCoordinate:
    node_q, _, segment_q = entry.key[len(keys.COORDS) :].partition("/")
    doc = json.loads(entry.value)
    coord = Coordinate(
        [float(v) for v in doc["Vec"]],
        float(doc["Error"]),
        float(doc["Adjustment"]),
        float(doc["Height"]),
    )
    return NodeCoordinate(unquote(node_q), unquote(segment_q), coord)


class CoordinateState:
    """Coordinate reads and batched writes; ``reader`` may be a replica of ``store``."""

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store
        #: Store transactions made and coordinates written (the write rate metric).
        self.batches_written = 0
        self.coordinates_written = 0

    async def batch_update(
        self, updates: Sequence[NodeCoordinate], batch_size: int = 128
    ) -> tuple[int, int]:
        """Write what changed, for nodes in the catalog; (coordinates written, index)."""
        if not updates:
            return 0, 0
        nodes, _ = await self.reader.range(keys.NODES)
        known = {keys.name_of(e.key) for e in nodes}
        stored, _ = await self.reader.range(keys.COORDS)
        current = {e.key: e.value for e in stored}
        puts: list[Put] = []
        for u in updates:
            if u.node not in known:
                continue
            key = keys.coord_key(u.node, u.segment)
            raw = _encode(u.coord)
            if current.get(key) != raw:
                puts.append(Put(key, raw))
        index = 0
        size = max(1, min(batch_size, self.store.max_txn_ops - 1))
        for start in range(0, len(puts), size):
            chunk = puts[start : start + size]
            _, index = await self.store.txn([], [*chunk, Put(keys.IDX_COORDS, b"")])
            self.batches_written += 1
            self.coordinates_written += len(chunk)
        if index:
            await reader_caught_up(self.reader, index)
        return len(puts), index

    async def _marker(self) -> int:
        """The coordinates' index marker, read BEFORE the data it stands for: a
        batch landing between two reads then makes the index lag the rows (one
        more wake for a watcher), never run ahead of them (a watcher told
        index N with rows older than N would miss that batch)."""
        marker, _ = await self.reader.get(keys.IDX_COORDS)
        return marker.modify_index if marker else 0

    async def list_nodes(
        self, opts: QueryOpts, segment: str | None = None
    ) -> Read[list[NodeCoordinate]]:
        """Every node's coordinates (one segment's with ``segment``), by node."""

        async def read() -> Read[list[NodeCoordinate]]:
            marker = await self._marker()
            entries, store_index = await self.reader.range(keys.COORDS)
            rows = [load_coordinate(e) for e in entries]
            if segment is not None:
                rows = [r for r in rows if r.segment == segment]
            rows.sort(key=lambda r: (r.node, r.segment))
            return Read(rows, (marker or store_index) or 1, store_index)

        return await blocking_query(self.reader, opts, [keys.COORDS, keys.IDX_COORDS], read)

    async def get_node(
        self, opts: QueryOpts, node: str, segment: str | None = None
    ) -> Read[list[NodeCoordinate]]:
        """One node's coordinates, one per segment; [] when it has none."""
        prefix = keys.node_coords(node)

        async def read() -> Read[list[NodeCoordinate]]:
            marker = await self._marker()
            entries, store_index = await self.reader.range(prefix)
            rows = [load_coordinate(e) for e in entries]
            rows = [r for r in rows if r.node == node]
            if segment is not None:
                rows = [r for r in rows if r.segment == segment]
            return Read(rows, (marker or store_index) or 1, store_index)

        return await blocking_query(self.reader, opts, [prefix, keys.IDX_COORDS], read)

    async def by_node(self, segment: str = "") -> dict[str, Coordinate]:
        """Node name -> coordinate in ``segment``: what near-sorting needs."""
        entries, _ = await self.reader.range(keys.COORDS)
        out: dict[str, Coordinate] = {}
        for e in entries:
            row = load_coordinate(e)
            if row.segment == segment:
                out[row.node] = row.coord
        return out
