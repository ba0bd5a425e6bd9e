"""Agent configuration: config file, flags winning, durations, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import build_config, parser
from agent.durations import format_duration, parse_duration
from agent.errors import InvalidArgument


def config_from(*argv: str):  # type: ignore[no-untyped-def]
    return build_config(parser().parse_args(["agent", *argv]))


def test_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "datacenter": "east",
                "node_name": "n1",
                "server": True,
                "suspect_timeout": "3s",
            }
        )
    )
    cfg = config_from("--config-file", str(path), "--node", "n2", "--dev")
    assert (cfg.datacenter, cfg.node_name, cfg.suspect_timeout) == ("east", "n2", 3.0)
    assert cfg.server and len(cfg.node_id) == 36


@pytest.mark.parametrize(
    "argv",
    [
        ["--dev", "--datacenter", "bad dc"],
        ["--dev", "--suspect-timeout=-1s"],
        ["--dev", "--suspect-timeout", "soon"],
        ["--server", "--store", "etcd"],  # no endpoints
        ["--server", "--retry-join", "x:1"],  # memory store cannot join
    ],
)
def test_bad_configuration_is_refused(argv: list[str]) -> None:
    with pytest.raises(InvalidArgument):
        config_from(*argv)


def test_client_may_start_unjoined() -> None:
    # As Consul's: a client agent with nothing to join starts, and is joined later.
    cfg = config_from("--node", "c1")
    assert not cfg.server and cfg.retry_join == ()


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"flavour": "vanilla"}))
    with pytest.raises(InvalidArgument, match="flavour"):
        config_from("--dev", "--config-file", str(path))


def test_go_durations() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration(5) == 5.0
    assert format_duration(259200) == "72h0m0s"
    for bad in ["", "5x", "-1s", "1h-2m"]:
        with pytest.raises(InvalidArgument):
            parse_duration(bad)


def test_ui_on_for_dev_and_by_flag_or_ui_config(tmp_path: Path) -> None:
    assert config_from("--dev").ui is True
    assert config_from("--server").ui is False
    assert config_from("--server", "--ui").ui is True
    path = tmp_path / "ui.json"
    path.write_text(json.dumps({"server": True, "ui_config": {"enabled": True}}))
    assert config_from("--config-file", str(path)).ui is True
    path.write_text(json.dumps({"server": True, "ui_config": {"enabled": "yes"}}))
    with pytest.raises(InvalidArgument, match="ui_config"):
        config_from("--config-file", str(path))
