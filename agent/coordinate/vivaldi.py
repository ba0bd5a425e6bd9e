"""Vivaldi network coordinates, as Serf computes them (``serf/coordinate``).

A port of Serf's ``config.go``, ``coordinate.go`` and ``client.go``: the same
constants, the same update order (latency filter, Vivaldi, adjustment,
gravity), the same guards, so a coordinate made here means what Consul's
means. Every value is in seconds. [1] Dabek et al., "Vivaldi" (SIGCOMM 2004);
[2] Ledlie et al., "Network Coordinates in the Wild" (NSDI 2007); [3] Lee et
al., "On suitability of Euclidean embedding..." (2010).

``Client`` is not thread-safe (Serf's takes a mutex): one agent's asyncio loop
owns it, and no method awaits.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = [
    "MAX_RTT",
    "Client",
    "Config",
    "Coordinate",
    "DimensionalityConflictError",
]

#: Serf's ``zeroThreshold``: closer than this, two points are on top of each other.
ZERO_THRESHOLD = 1.0e-6
#: Serf refuses round-trip times outside [0, 10 s].
MAX_RTT = 10.0


@dataclass(frozen=True, slots=True)
class Config:
    """Serf's ``DefaultConfig``: 8 dimensions plus a height [2]."""

    dimensionality: int = 8
    #: Error of a node with no observations; also the error's upper bound.
    vivaldi_error_max: float = 1.5
    #: At most this much of an observation moves the confidence [1].
    vivaldi_ce: float = 0.25
    #: At most this much of an observation moves the coordinate [1].
    vivaldi_cc: float = 0.25
    #: Samples kept for the adjustment term [3]; 0 turns it off.
    adjustment_window_size: int = 20
    #: Height never goes below this (it must stay positive).
    height_min: float = 10.0e-6
    #: RTT samples kept per peer; the median is what Vivaldi sees [2].
    latency_filter_size: int = 3
    #: How hard gravity pulls coordinates back to the origin [2].
    gravity_rho: float = 150.0


class DimensionalityConflictError(ValueError):
    """Two coordinates of different dimensions met (Serf panics)."""

    def __init__(self) -> None:
        super().__init__("coordinate dimensionality does not match")


def _valid(f: float) -> bool:
    return not (math.isinf(f) or math.isnan(f))


def _add(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)]


def _diff(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _mul(v: list[float], factor: float) -> list[float]:
    return [x * factor for x in v]


def _magnitude(v: list[float]) -> float:
    return math.hypot(*v)


def _duration_seconds(seconds: float) -> float:
    """``time.Duration(seconds * 1e9).Seconds()``: Go truncates to whole nanoseconds.
    A NaN or infinity passes through (the update that made it resets the client)."""
    if not _valid(seconds):
        return seconds
    return math.trunc(seconds * 1.0e9) / 1.0e9


def unit_vector_at(
    v1: list[float], v2: list[float], rng: random.Random | None = None
) -> tuple[list[float], float]:
    """A unit vector pointing at ``v1`` from ``v2``, and their distance; a random
    unit vector (distance 0) when they are on top of each other."""
    ret = _diff(v1, v2)
    mag = _magnitude(ret)
    if mag > ZERO_THRESHOLD:
        return _mul(ret, 1.0 / mag), mag
    r = rng or random
    ret = [r.random() - 0.5 for _ in ret]
    mag = _magnitude(ret)
    if mag > ZERO_THRESHOLD:
        return _mul(ret, 1.0 / mag), 0.0
    # Exceedingly rare: a unit vector along the first dimension.
    ret = [0.0] * len(ret)
    ret[0] = 1.0
    return ret, 0.0


@dataclass(slots=True)
class Coordinate:
    """A point (``vec``), the confidence in it (``error``, dimensionless), and two
    offsets in seconds: ``adjustment`` [3] and ``height`` (the access link)."""

    vec: list[float]
    error: float
    adjustment: float = 0.0
    height: float = 0.0

    @classmethod
    def new(cls, config: Config | None = None) -> Coordinate:
        """At the origin, with the maximum error and the minimum height."""
        cfg = config or Config()
        return cls([0.0] * cfg.dimensionality, cfg.vivaldi_error_max, 0.0, cfg.height_min)

    def clone(self) -> Coordinate:
        return Coordinate(list(self.vec), self.error, self.adjustment, self.height)

    def is_valid(self) -> bool:
        """False if any component is NaN or infinite."""
        return all(map(_valid, self.vec)) and all(
            map(_valid, (self.error, self.adjustment, self.height))
        )

    def is_compatible_with(self, other: Coordinate) -> bool:
        return len(self.vec) == len(other.vec)

    def apply_force(
        self, config: Config, force: float, other: Coordinate, rng: random.Random | None = None
    ) -> Coordinate:
        """This point pushed by ``force`` away from ``other`` (pulled if negative)."""
        if not self.is_compatible_with(other):
            raise DimensionalityConflictError()
        ret = self.clone()
        unit, mag = unit_vector_at(self.vec, other.vec, rng)
        ret.vec = _add(ret.vec, _mul(unit, force))
        if mag > ZERO_THRESHOLD:
            ret.height = (ret.height + other.height) * force / mag + ret.height
            ret.height = max(ret.height, config.height_min)
        return ret

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds, adjustments included unless they would make
        it negative; truncated to whole nanoseconds as Serf's ``time.Duration``."""
        if not self.is_compatible_with(other):
            raise DimensionalityConflictError()
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        if adjusted > 0.0:
            dist = adjusted
        return _duration_seconds(dist)

    def raw_distance_to(self, other: Coordinate) -> float:
        """The Vivaldi distance in seconds, without adjustments."""
        return math.dist(self.vec, other.vec) + self.height + other.height


@dataclass(slots=True)
class _Stats:
    #: Times the coordinate went invalid and was reset to the origin.
    resets: int = 0
    #: Observations of a zero RTT (coarse clocks; Serf counts them too).
    zero_rtts: int = 0


class Client:
    """One node's coordinate, moved by each (peer coordinate, RTT) it observes."""

    def __init__(self, config: Config | None = None, rng: random.Random | None = None) -> None:
        cfg = config or Config()
        if not cfg.dimensionality > 0:
            raise ValueError("dimensionality must be >0")
        self.config = cfg
        self.rng = rng
        self.coord = Coordinate.new(cfg)
        self.origin = Coordinate.new(cfg)
        self.adjustment_index = 0
        self.adjustment_samples = [0.0] * cfg.adjustment_window_size
        self.latency_filter_samples: dict[str, list[float]] = {}
        self.stats = _Stats()
        self.updates = 0

    def get_coordinate(self) -> Coordinate:
        return self.coord.clone()

    def set_coordinate(self, coord: Coordinate) -> None:
        self._check(coord)
        self.coord = coord.clone()

    def forget_node(self, node: str) -> None:
        self.latency_filter_samples.pop(node, None)

    def _check(self, coord: Coordinate) -> None:
        if not self.coord.is_compatible_with(coord):
            raise ValueError("dimensions aren't compatible")
        if not coord.is_valid():
            raise ValueError("coordinate is invalid")

    def latency_filter(self, node: str, rtt: float) -> float:
        """The median of the last ``latency_filter_size`` samples of ``node``."""
        samples = self.latency_filter_samples.get(node, [])
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            samples = samples[1:]
        self.latency_filter_samples[node] = samples
        ordered = sorted(samples)
        return ordered[len(ordered) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        cfg = self.config
        dist = self.coord.distance_to(other)
        rtt = max(rtt, ZERO_THRESHOLD)
        wrongness = abs(dist - rtt) / rtt
        total_error = max(self.coord.error + other.error, ZERO_THRESHOLD)
        weight = self.coord.error / total_error
        self.coord.error = cfg.vivaldi_ce * weight * wrongness + self.coord.error * (
            1.0 - cfg.vivaldi_ce * weight
        )
        self.coord.error = min(self.coord.error, cfg.vivaldi_error_max)
        force = cfg.vivaldi_cc * weight * (rtt - dist)
        self.coord = self.coord.apply_force(cfg, force, other, self.rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        size = self.config.adjustment_window_size
        if size == 0:
            return
        # The existing adjustments do not figure in: the raw distance.
        self.adjustment_samples[self.adjustment_index] = rtt - self.coord.raw_distance_to(other)
        self.adjustment_index = (self.adjustment_index + 1) % size
        self.coord.adjustment = sum(self.adjustment_samples) / (2.0 * size)

    def _update_gravity(self) -> None:
        dist = self.origin.distance_to(self.coord)
        force = -1.0 * (dist / self.config.gravity_rho) ** 2
        self.coord = self.coord.apply_force(self.config, force, self.origin, self.rng)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """Observe ``rtt`` seconds to ``node`` at ``other``; the new coordinate.

        ValueError (and no change) for an incompatible or invalid ``other`` or
        an RTT outside [0, 10 s], with Serf's texts.
        """
        self._check(other)
        if not 0 <= rtt <= MAX_RTT:
            raise ValueError(
                f"round trip time not in valid range, duration {rtt}s is not a positive"
                f" value less than {MAX_RTT:g}s"
            )
        if rtt == 0:
            self.stats.zero_rtts += 1
        filtered = self.latency_filter(node, _duration_seconds(rtt))
        self._update_vivaldi(other, filtered)
        self._update_adjustment(other, filtered)
        self._update_gravity()
        if not self.coord.is_valid():
            self.stats.resets += 1
            self.coord = Coordinate.new(self.config)
        self.updates += 1
        return self.coord.clone()

    def distance_to(self, other: Coordinate) -> float:
        return self.coord.distance_to(other)
