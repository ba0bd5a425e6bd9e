"""The config loader: JSON and HCL, Consul's merge order, the key table, file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.configfile import KEYS, ConfigError, Use, load_sources
from agent.configfile.flags import apply_sources


def write(d: Path, name: str, text: str) -> Path:
    path = d / name
    path.write_text(text)
    return path


def test_dir_lexical_order_later_wins_lists_append(tmp_path: Path) -> None:
    write(tmp_path, "b.json", '{"datacenter": "east", "retry_join": ["b:8300"]}')
    write(tmp_path, "a.hcl", 'datacenter = "west"\nretry_join = ["a:8300"]\nnode_name = "n1"\n')
    write(tmp_path, "notes.txt", "not a config file: skipped as Consul skips it")
    loaded = load_sources([("dir", str(tmp_path))])
    assert loaded.values["datacenter"] == "east"  # b.json after a.hcl
    assert loaded.values["retry_join"] == ("a:8300", "b:8300")
    assert loaded.values["node_name"] == "n1"
    assert [Path(f).name for f in loaded.files] == ["a.hcl", "b.json"]


def test_files_in_command_line_order(tmp_path: Path) -> None:
    a = write(tmp_path, "z.json", '{"datacenter": "first"}')
    b = write(tmp_path, "a.json", '{"datacenter": "second"}')
    assert load_sources([("file", str(a)), ("file", str(b))]).values["datacenter"] == "second"


def test_hcl_service_blocks_repeated_and_nested_checks(tmp_path: Path) -> None:
    write(
        tmp_path,
        "svc.hcl",
        """
service {
  name = "web"
  port = 8080
  tags = ["v1"]
  meta {
    team = "a"
  }
  check {
    ttl = "30s"
  }
  check {
    tcp      = "127.0.0.1:8080"
    interval = "10s"
  }
}
service {
  name = "db"
  id   = "db-1"
}
check {
  name = "mem"
  ttl  = "5s"
}
""",
    )
    write(tmp_path, "x.json", '{"services": [{"Name": "api", "Check": {"TTL": "10s"}}]}')
    loaded = load_sources([("dir", str(tmp_path))])
    by_id = {d.service.id: d for d in loaded.services}
    assert set(by_id) == {"web", "db-1", "api"}
    web = by_id["web"]
    assert (web.service.port, list(web.service.tags), dict(web.service.meta)) == (
        8080,
        ["v1"],
        {"team": "a"},
    )
    assert len(web.checks) == 2 and web.checks[1].definition.tcp == "127.0.0.1:8080"
    assert len(by_id["api"].checks) == 1
    assert [c.name for c in loaded.checks] == ["mem"]


def test_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.hcl", 'datacenter = "dc1"\n\nports {\n  http = 1\n  htp = 1\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.hcl:5: invalid config key ports\.htp"):
        load_sources([("file", str(path))])
    path = write(tmp_path, "bad.json", '{\n  "node_name": "x",\n  "flavour": 1\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.json:3: invalid config key flavour"):
        load_sources([("file", str(path))])
    path = write(tmp_path, "svc.hcl", 'service {\n  name = "w"\n  colour = "blue"\n}\n')
    with pytest.raises(ConfigError, match=r"svc\.hcl:3: invalid config key service\.colour"):
        load_sources([("file", str(path))])


def test_bad_values_and_syntax_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.hcl", 'log_level = "INFO"\nserver = "yes"\n')
    with pytest.raises(ConfigError, match=r"t\.hcl:2: server must be a boolean"):
        load_sources([("file", str(path))])
    path = write(tmp_path, "s.hcl", "datacenter = \n}")
    with pytest.raises(ConfigError, match=r"s\.hcl:\d+: invalid HCL"):
        load_sources([("file", str(path))])
    path = write(tmp_path, "j.json", '{\n "a": }')
    with pytest.raises(ConfigError, match=r"j\.json:2: invalid JSON"):
        load_sources([("file", str(path))])
    path = write(tmp_path, "p.hcl", 'service {\n  name = "w"\n  port = "eighty"\n}\n')
    with pytest.raises(ConfigError, match=r"p\.hcl:1: service 'w': .*Port must be an integer"):
        load_sources([("file", str(path))])
    with pytest.raises(ConfigError, match="config directory does not exist"):
        load_sources([("dir", str(tmp_path / "missing"))])


def test_keys_we_lack_are_accepted_with_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.hcl",
        "performance {\n  raft_multiplier = 5\n}\nports {\n  serf_lan = 8301\n}\n"
        'telemetry {\n  statsd_address = "x:1"\n}\ndns_config {\n  allow_stale = true\n}\n',
    )
    loaded = load_sources([("file", str(path))])
    text = "\n".join(loaded.warnings)
    assert "c.hcl:2: config key performance.raft_multiplier is accepted" in text
    assert "c.hcl:5: config key ports.serf_lan" in text
    assert "telemetry" in text and "dns_config" in text
    assert "not supported by consul-grpc yet" in text
    assert loaded.values == {}


def test_addresses_and_ports_compose(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.json",
        '{"client_addr": "0.0.0.0", "ports": {"http": -1, "grpc": 18502, "server": 18300},'
        ' "addresses": {"grpc": "127.0.0.2"}}',
    )
    cfg = apply_sources(AgentConfig(), [("file", str(path))])
    assert cfg.http_addr == ""  # -1 disables, as in Consul
    assert cfg.grpc_addr == "127.0.0.2:18502"
    assert cfg.rpc_addr == "127.0.0.1:18300"
    assert cfg.config_sources == (("file", str(path)),)
    path.write_text('{"ports": {"grpc": -1}}')
    with pytest.raises(ConfigError, match=r"a\.json:1: ports.grpc cannot be disabled"):
        apply_sources(AgentConfig(), [("file", str(path))])


def test_other_teams_keys_are_listed_to_plug_in() -> None:
    for key in ("dns_config", "ports.dns", "ui_config", "limits", "acl", "tls"):
        assert key in KEYS, key
    assert KEYS["ports.dns"].use is Use.PLANNED
    assert KEYS["performance.raft_multiplier"].use is Use.ACCEPTED
