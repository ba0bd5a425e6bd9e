"""Serf's ``phantom.go``: truth matrices, a simulation and its evaluation, with
which Serf (and our unit tests) check that Vivaldi converges. RTTs in seconds."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from agent.coordinate.vivaldi import Client, Config

__all__ = [
    "Stats",
    "evaluate",
    "generate_circle",
    "generate_clients",
    "generate_grid",
    "generate_line",
    "generate_random",
    "generate_split",
    "simulate",
]

Truth = list[list[float]]


def _ns(seconds: float) -> float:
    """As a Go ``time.Duration``: whole nanoseconds."""
    return math.trunc(seconds * 1e9) / 1e9


def _empty(nodes: int) -> Truth:
    return [[0.0] * nodes for _ in range(nodes)]


def generate_clients(nodes: int, config: Config, rng: random.Random | None = None) -> list[Client]:
    return [Client(config, rng) for _ in range(nodes)]


def generate_line(nodes: int, spacing: float) -> Truth:
    """Nodes on a straight line, ``spacing`` apart."""
    truth = _empty(nodes)
    for i in range(nodes):
        for j in range(i + 1, nodes):
            truth[i][j] = truth[j][i] = _ns((j - i) * spacing)
    return truth


def generate_grid(nodes: int, spacing: float) -> Truth:
    """Nodes on a square grid, ``spacing`` apart."""
    truth = _empty(nodes)
    n = int(math.sqrt(nodes))
    for i in range(nodes):
        for j in range(i + 1, nodes):
            x1, y1 = float(i % n), float(i // n)
            x2, y2 = float(j % n), float(j // n)
            truth[i][j] = truth[j][i] = _ns(math.hypot(x2 - x1, y2 - y1) * spacing)
    return truth


def generate_split(nodes: int, lan: float, wan: float) -> Truth:
    """Two LANs (``lan`` apart inside each) joined by a ``wan`` link."""
    truth = _empty(nodes)
    split = nodes // 2
    for i in range(nodes):
        for j in range(i + 1, nodes):
            rtt = lan
            if (i <= split < j) or (i > split >= j):
                rtt += wan
            truth[i][j] = truth[j][i] = _ns(rtt)
    return truth


def generate_circle(nodes: int, radius: float) -> Truth:
    """Node 0 in the middle (but ``2 * radius`` from everyone), the rest on a circle."""
    truth = _empty(nodes)
    for i in range(nodes):
        for j in range(i + 1, nodes):
            if i == 0:
                rtt = 2 * radius
            else:
                t1 = 2.0 * math.pi * i / nodes
                t2 = 2.0 * math.pi * j / nodes
                dist = math.hypot(math.cos(t2) - math.cos(t1), math.sin(t2) - math.sin(t1))
                rtt = dist * radius
            truth[i][j] = truth[j][i] = _ns(rtt)
    return truth


def generate_random(nodes: int, mean: float, deviation: float, seed: int = 1) -> Truth:
    """Normally distributed RTTs."""
    rng = random.Random(seed)
    truth = _empty(nodes)
    for i in range(nodes):
        for j in range(i + 1, nodes):
            truth[i][j] = truth[j][i] = _ns(rng.gauss(mean, deviation))
    return truth


def simulate(clients: list[Client], truth: Truth, cycles: int, seed: int = 1) -> None:
    """Each cycle, every client observes the true RTT to one random other node."""
    rng = random.Random(seed)
    nodes = len(clients)
    for _ in range(cycles):
        for i, client in enumerate(clients):
            j = rng.randrange(nodes)
            if j != i:
                client.update(f"node_{j}", clients[j].get_coordinate(), truth[i][j])


@dataclass(frozen=True, slots=True)
class Stats:
    error_max: float
    error_avg: float


def evaluate(clients: list[Client], truth: Truth) -> Stats:
    """Relative error of every pair's estimate against the truth."""
    nodes = len(clients)
    errors = [
        abs(clients[i].distance_to(clients[j].get_coordinate()) - truth[i][j]) / truth[i][j]
        for i in range(nodes)
        for j in range(i + 1, nodes)
    ]
    return Stats(max(errors), sum(errors) / len(errors))
