"""The tls stanza: Consul's inheritance (defaults -> internal_rpc/https/grpc), refusals, ports."""

from __future__ import annotations

import pytest

from agent.config import AgentConfig
from agent.errors import InvalidArgument
from agent.tls.config import TLSConfig, TLSSettings


def test_sections_inherit_defaults_and_override_them() -> None:
    cfg = TLSConfig.parse(
        {
            "defaults": {
                "ca_file": "ca.pem",
                "cert_file": "a.pem",
                "key_file": "a-key.pem",
                "verify_incoming": True,
                "verify_outgoing": True,
                "tls_min_version": "TLSv1_3",
            },
            "internal_rpc": {"verify_server_hostname": True},
            "https": {"verify_incoming": False, "cert_file": "h.pem", "key_file": "h-key.pem"},
            "grpc": {"verify_incoming": "false"},
        }
    )
    assert cfg.internal_rpc == TLSSettings(
        ca_file="ca.pem",
        cert_file="a.pem",
        key_file="a-key.pem",
        verify_incoming=True,
        verify_outgoing=True,
        verify_server_hostname=True,
        tls_min_version="TLSv1_3",
    )
    assert cfg.https.cert_file == "h.pem" and not cfg.https.verify_incoming
    assert cfg.https.ca_file == "ca.pem" and cfg.https.tls_min_version == "TLSv1_3"
    # gRPC has no outgoing side in Consul: verify_outgoing is not inherited there.
    assert cfg.grpc.cert_file == "a.pem" and not cfg.grpc.verify_outgoing
    assert not cfg.grpc.verify_incoming


def test_verify_server_hostname_implies_verify_outgoing() -> None:
    cfg = TLSConfig.parse(
        {"defaults": {"ca_file": "ca.pem"}, "internal_rpc": {"verify_server_hostname": True}}
    )
    assert cfg.internal_rpc.verify_outgoing
    assert not cfg.https.verify_outgoing


def test_cipher_suites_as_consul_writes_them() -> None:
    cfg = TLSConfig.parse(
        {
            "defaults": {
                "tls_cipher_suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            }
        }
    )
    assert cfg.https.tls_cipher_suites == (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"default": {}}, "Unknown configuration key 'tls.default'"),
        ({"defaults": {"verify_server_hostname": True}}, "tls.defaults.verify_server_hostname"),
        ({"grpc": {"verify_outgoing": True}}, "tls.grpc.verify_outgoing"),
        ({"defaults": {"verify_incoming": True}}, "no CA certificate"),
        (
            {"defaults": {"verify_incoming": True, "ca_file": "ca.pem"}},
            "no cert_file/key_file pair",
        ),
        ({"defaults": {"verify_outgoing": True}}, "verify_outgoing set, and no CA"),
        ({"https": {"cert_file": "a.pem"}}, "tls.https: cert_file and key_file go together"),
        ({"defaults": {"tls_min_version": "tls12"}}, "tls_min_version 'tls12'"),
        ({"defaults": {"verify_incoming": "yes please"}}, "must be a boolean"),
        ({"defaults": {"ca_file": 3}}, "must be a string"),
        ({"defaults": "x"}, "tls.defaults must be an object"),
        ("on", "tls must be an object"),
        ({"grpc": {"use_auto_cert": True}}, "auto-encrypt"),
    ],
)
def test_bad_stanzas_are_refused_with_the_key(raw: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        TLSConfig.parse(raw)


def test_agent_config_reads_tls_and_ports() -> None:
    cfg = AgentConfig().merged(
        {
            "http_addr": "0.0.0.0:8500",
            "tls": {"defaults": {"cert_file": "a.pem", "key_file": "a-key.pem"}},
            "ports": {"https": 8501, "grpc_tls": "8503"},
        }
    )
    assert cfg.tls.https.cert_file == "a.pem"
    assert cfg.https_addr == "0.0.0.0:8501"
    assert cfg.grpc_tls_addr == "127.0.0.1:8503"
    assert cfg.merged({"ports": {"https": -1}}).https_addr == ""


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ports": {"serf_wan": 8302}}, "Unknown configuration key 'ports.serf_wan'"),
        ({"ports": {"https": "x"}}, "ports.https must be a port number"),
        ({"ports": {"https": 70000}}, "ports.https must be a port number"),
    ],
)
def test_bad_ports(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        AgentConfig().merged(overrides)


def test_a_tls_listener_needs_a_certificate() -> None:
    cfg = AgentConfig(server=True).merged({"ports": {"https": 8501}})
    with pytest.raises(InvalidArgument, match=r"ports\.https is set, but tls\.https has no cert"):
        cfg.validated()
    cfg = AgentConfig(server=True, grpc_tls_addr="127.0.0.1:8503")
    with pytest.raises(InvalidArgument, match=r"ports\.grpc_tls is set"):
        cfg.validated()


def test_agent_flags_for_the_tls_listeners() -> None:
    from agent.cli import build_config, parser

    argv = ["agent", "--dev", "--http-addr", "127.0.0.2:8500", "-https-port", "8501"]
    argv += ["-grpc-tls-port", "8503", "-domain", "example"]
    args = parser().parse_args(argv)
    assert args.ports == {"https": 8501, "grpc_tls": 8503}
    # The listeners need certificates (from the config file's tls stanza).
    with pytest.raises(InvalidArgument, match=r"ports\.https is set, but tls\.https"):
        build_config(args)
    args.ports = None
    cfg = build_config(args)
    assert cfg.domain == "example" and cfg.https_addr == "" and cfg.grpc_tls_addr == ""
    args.grpc_tls_addr = "127.0.0.1:9999"
    with pytest.raises(InvalidArgument, match=r"ports\.grpc_tls is set"):
        build_config(args)
