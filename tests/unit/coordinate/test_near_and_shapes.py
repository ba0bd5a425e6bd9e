"""Ordering by RTT (Consul's sortNodesByDistanceFrom) and the Coord JSON at the edge."""

from __future__ import annotations

import math

import pytest

from agent.coordinate import (
    Coordinate,
    coord_from_json,
    coord_json,
    from_proto,
    sort_by_distance,
    to_proto,
)


def at(x: float) -> Coordinate:
    c = Coordinate.new()
    c.vec[0] = x
    return c


def test_nearest_first_and_unknown_nodes_last_stably() -> None:
    coords = {"src": at(0.0), "a": at(0.3), "b": at(0.1), "c": at(0.2)}
    rows = ["x", "a", "y", "b", "c"]  # x, y have no coordinate
    assert sort_by_distance(rows, str, "src", coords) == ["b", "c", "a", "x", "y"]


def test_no_coordinate_for_the_source_keeps_the_order() -> None:
    rows = ["a", "b"]
    assert sort_by_distance(rows, str, "nobody", {"a": at(0.5), "b": at(0.1)}) == rows


def test_incompatible_coordinates_sort_last() -> None:
    odd = Coordinate([0.0, 0.0], 1.5)
    coords = {"src": at(0.0), "odd": odd, "a": at(0.2)}
    assert sort_by_distance(["odd", "a"], str, "src", coords) == ["a", "odd"]


def test_json_and_proto_round_trip() -> None:
    c = at(0.25)
    c.error, c.adjustment, c.height = 0.4, -0.001, 0.0002
    doc = coord_json(c)
    assert set(doc) == {"Vec", "Error", "Adjustment", "Height"}
    assert coord_from_json(doc) == c
    assert from_proto(to_proto(c)) == c
    # Keys are matched without regard to case, as Consul's decoder does.
    assert coord_from_json({"vec": doc["Vec"], "error": 0.4}).error == 0.4


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"Vec": [1, 2]},  # wrong dimensionality
        {"Vec": "12345678"},
        {"Vec": ["a"] * 8},
        {"Vec": [True] * 8},
        {"Vec": [0] * 8, "Height": "x"},
        {"Vec": [math.inf] + [0] * 7},
        {"Vec": [0] * 8, "Error": math.nan},
    ],
)
def test_bad_coordinates_are_refused_with_consuls_text(doc: object) -> None:
    with pytest.raises(ValueError, match=r"^rejected bad coordinate"):
        coord_from_json(doc)
