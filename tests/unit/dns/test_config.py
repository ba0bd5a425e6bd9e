"""DNS settings from flags and the config file: Consul's keys, bad values as clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import build_config, parser
from agent.config import AgentConfig
from agent.dns.config import dns_config
from agent.errors import InvalidArgument


def test_ports_dns_and_flags() -> None:
    assert AgentConfig().dns_addr == "127.0.0.1:8600"
    assert AgentConfig().merged({"ports": {"dns": 8653}}).dns_addr == "127.0.0.1:8653"
    assert AgentConfig().merged({"ports": {"dns": -1}}).dns_addr == "127.0.0.1:-1"
    with pytest.raises(InvalidArgument, match=r"ports\.dns"):
        AgentConfig().merged({"ports": {"dns": "x"}})
    with pytest.raises(InvalidArgument, match=r"ports\.bogus"):
        AgentConfig().merged({"ports": {"dns": 1, "bogus": 1}})
    cfg = build_config(
        parser().parse_args(["agent", "--dev", "--dns-addr", "127.0.0.1:0", "--domain", "corp"])
    )
    assert cfg.dns_addr == "127.0.0.1:0" and cfg.domain == "corp"


def test_config_file_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps(
            {
                "domain": "example",
                "alt_domain": "alt.example",
                "recursors": ["192.0.2.1", "192.0.2.2:5353"],
                "dns_config": {
                    "node_ttl": "10s",
                    "service_ttl": {"*": "5s", "web": "30s"},
                    "udp_answer_limit": 20,
                    "soa": {"min_ttl": 60},
                },
            }
        )
    )
    cfg = build_config(parser().parse_args(["agent", "--dev", "--config-file", str(path)]))
    d = dns_config(
        cfg.dns_config, domain=cfg.domain, alt_domain=cfg.alt_domain, recursors=cfg.recursors
    )
    assert d.domain == "example." and d.alt_domain == "alt.example."
    assert d.node_ttl == 10 and d.ttl_for_service("web") == 30 and d.ttl_for_service("db") == 5
    assert d.udp_answer_limit == 8  # Consul's ceiling
    assert d.soa_min_ttl == 60 and d.soa_refresh == 3600


@pytest.mark.parametrize(
    "raw",
    [
        {"nope": 1},
        {"udp_answer_limit": 0},
        {"recursor_strategy": "fastest"},
        {"node_ttl": "forever"},
        {"enable_truncate": "yes"},
    ],
)
def test_bad_dns_config_is_a_clear_error(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        dns_config(raw)


def test_hcl_config_file_keys(tmp_path: Path) -> None:
    from agent.configfile.flags import apply_sources

    path = tmp_path / "dns.hcl"
    path.write_text(
        'client_addr = "127.0.0.2"\n'
        "ports {\n  dns = 8653\n}\n"
        'alt_domain = "alt.example"\n'
        'recursors = ["192.0.2.1"]\n'
        'dns_config {\n  only_passing = true\n  node_ttl = "5s"\n}\n'
    )
    cfg = apply_sources(AgentConfig(), [("file", str(path))])
    assert cfg.dns_addr == "127.0.0.2:8653"
    assert cfg.alt_domain == "alt.example" and cfg.recursors == ("192.0.2.1",)
    d = dns_config(cfg.dns_config, recursors=cfg.recursors)
    assert d.only_passing and d.node_ttl == 5
    off = tmp_path / "off.json"
    off.write_text(json.dumps({"ports": {"dns": -1}}))
    assert apply_sources(AgentConfig(), [("file", str(off))]).dns_addr == "127.0.0.1:-1"
