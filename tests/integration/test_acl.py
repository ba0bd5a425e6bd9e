"""ACLs end to end with real agents: default deny, tokens, the agent token, bad input.

Servers and client agents are real processes; tokens and policies are made
through the HTTP API with the initial management token, as an operator would.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import consul
import grpc
import pytest

from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.kv.v1 import kv_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, wait_until

T = 10
MGMT = "11111111-2222-3333-4444-555555555555"
ACL_DENY = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MGMT}}


def http(
    agent: AgentProcess,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=data, method=method)
    if token is not None:
        req.add_header("X-Consul-Token", token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=T) as resp:
            raw = resp.read().decode()
            status, hdrs = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw = err.read().decode()
        status, hdrs = err.code, dict(err.headers)
    try:
        parsed: Any = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        parsed = raw
    return status, parsed, hdrs


def config_file(tmp_path: Path, name: str, acl: dict[str, Any], **extra: Any) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"acl": acl, **extra}))
    return str(path)


def make_token(agent: AgentProcess, name: str, rules: str, **extra: Any) -> dict[str, Any]:
    status, policy, _ = http(agent, "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}, MGMT)
    assert status == 200, policy
    status, token, _ = http(
        agent,
        "PUT",
        "/v1/acl/token",
        {"Description": name, "Policies": [{"ID": policy["ID"]}], **extra},
        MGMT,
    )
    assert status == 200, token
    return dict(token)


def acl_server(
    cluster: Cluster, tmp_path: Path, name: str = "s1", *args: str, **extra: Any
) -> AgentProcess:
    cfg = config_file(tmp_path, name, ACL_DENY, **extra)
    server = cluster.server(name, "--config-file", cfg, "--data-dir", str(tmp_path / name), *args)
    wait_until(
        lambda: http(server, "GET", "/v1/acl/token/self", token=MGMT)[0] == 200,
        what="initial management token",
    )
    return server


def test_default_deny_hides_and_a_token_reveals(cluster: Cluster, tmp_path: Path) -> None:
    s1 = acl_server(cluster, tmp_path)
    # The client agent's own token: its node (write) and the service it runs.
    agent_tok = make_token(
        s1, "c1-agent", 'node "c1" { policy = "write" }\nservice "web" { policy = "write" }'
    )
    app_tok = make_token(s1, "web-app", 'service "web" { policy = "write" }')
    reader = make_token(
        s1,
        "reader",
        'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
        'key_prefix "app/" { policy = "read" }',
    )
    c_acl = {
        "enabled": True,
        "default_policy": "deny",
        "tokens": {"agent": agent_tok["SecretID"]},
    }
    c1 = cluster.client(
        "c1",
        "--retry-join",
        s1.rpc_addr,
        "--config-file",
        config_file(tmp_path, "c1", c_acl),
        wait=False,
    )
    c1.wait_ready()
    wait_until(
        lambda: http(c1, "GET", "/v1/catalog/nodes", token=MGMT)[0] == 200,
        what="c1 to reach a server",
    )

    # The application registers its service on the client agent with its own
    # token; anti-entropy pushes it to the catalog with the agent token only.
    status, text, _ = http(
        c1, "PUT", "/v1/agent/service/register", {"Name": "web", "Port": 80}, app_tok["SecretID"]
    )
    assert status == 200, text

    def web_nodes(token: str | None) -> list[str]:
        status, body, _ = http(c1, "GET", "/v1/catalog/service/web", token=token)
        assert status == 200, body
        return [e["Node"] for e in body]

    wait_until(lambda: web_nodes(MGMT) == ["c1"], what="anti-entropy with the agent token")
    assert http(s1, "PUT", "/v1/kv/app/secret", "s3cret", MGMT)[0] == 200

    # Anonymous (no token, no default token): everything hidden or refused.
    status, services, hdrs = http(c1, "GET", "/v1/catalog/services")
    assert (status, services) == (200, {})
    assert hdrs.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    assert web_nodes(None) == []
    assert http(c1, "GET", "/v1/catalog/nodes")[1] == []
    assert http(c1, "GET", "/v1/health/service/web")[1] == []
    status, text, _ = http(c1, "GET", "/v1/kv/app/secret")
    assert status == 403
    assert text == (
        "Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002'"
        " lacks permission 'key:read' on \"app/secret\""
    )
    assert http(c1, "GET", "/v1/kv/app?recurse")[0] == 404  # filtered to nothing
    assert http(c1, "GET", "/v1/kv/?keys")[1] in (None, "", [])

    # The same reads with a token that has the rights, through every token carrier.
    secret = reader["SecretID"]
    assert web_nodes(secret) == ["c1"]
    assert "web" in http(c1, "GET", "/v1/catalog/services", token=secret)[1]
    nodes = http(c1, "GET", "/v1/catalog/nodes", headers={"Authorization": f"Bearer {secret}"})[1]
    assert {"s1", "c1"} <= {n["Node"] for n in nodes}
    assert http(c1, "GET", f"/v1/health/service/web?token={secret}")[1][0]["Node"]["Node"] == "c1"
    assert http(c1, "GET", "/v1/kv/app/secret?raw", token=secret)[1] == "s3cret"
    assert http(c1, "GET", "/v1/kv/app/?keys", token=secret)[1] == ["app/secret"]

    # gRPC on the client agent: the x-consul-token metadata.
    with grpc.insecure_channel(c1.grpc_addr) as ch:
        kv = kv_pb2_grpc.KVServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            kv.Get(kpb.GetRequest(key="app/secret"), timeout=T)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        got = kv.Get(
            kpb.GetRequest(key="app/secret"), timeout=T, metadata=[("x-consul-token", secret)]
        )
        assert got.pair.value == b"s3cret"

    # The ACL API on gRPC, through the client agent (forwarded with the token).
    from generated.consul.acl.v1 import acl_pb2, acl_pb2_grpc

    with grpc.insecure_channel(c1.grpc_addr) as ch:
        acl = acl_pb2_grpc.ACLServiceStub(ch)
        me = acl.ReadToken(
            acl_pb2.ReadTokenRequest(), timeout=T, metadata=[("x-consul-token", secret)]
        )
        assert me.token["AccessorID"] == reader["AccessorID"]
        with pytest.raises(grpc.RpcError) as err:
            acl.ListPolicies(
                acl_pb2.ListPoliciesRequest(), timeout=T, metadata=[("x-consul-token", secret)]
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        answer = acl.Authorize(
            acl_pb2.AuthorizeRequest(
                checks=[acl_pb2.AuthorizeCheck(resource="key", segment="app/x", access="write")]
            ),
            timeout=T,
            metadata=[("x-consul-token", secret)],
        )
        assert [r.allow for r in answer.results] == [False]

    # A write without rights is 403 and changes nothing.
    status, text, _ = http(c1, "PUT", "/v1/kv/app/secret", "changed", secret)
    assert status == 403
    assert "lacks permission 'key:write' on \"app/secret\"" in text
    assert http(s1, "GET", "/v1/kv/app/secret?raw", token=MGMT)[1] == "s3cret"
    status, _, _ = http(c1, "PUT", "/v1/catalog/deregister", {"Node": "c1"}, secret)
    assert status == 403
    assert web_nodes(MGMT) == ["c1"]
    status, _, _ = http(
        c1, "PUT", "/v1/agent/service/register", {"Name": "db", "Port": 5432}, secret
    )
    assert status == 403
    assert "db" not in http(c1, "GET", "/v1/agent/services", token=MGMT)[1]


def test_bad_input_is_a_clear_4xx_and_changes_nothing(cluster: Cluster, tmp_path: Path) -> None:
    s1 = acl_server(cluster, tmp_path)
    before = http(s1, "GET", "/v1/acl/policies", token=MGMT)[1]
    # ?filter applies on the ACL lists, as Consul's; a malformed one is a 400.
    by_name = "filter=Name%20%3D%3D%20%22global-management%22"
    kept = http(s1, "GET", f"/v1/acl/policies?{by_name}", None, MGMT)
    assert [p["Name"] for p in kept[1]] == ["global-management"]
    none = "filter=Description%20%3D%3D%20%22zz%22"
    assert http(s1, "GET", f"/v1/acl/policies?{none}", None, MGMT)[1] == []
    assert http(s1, "GET", "/v1/acl/tokens", None, MGMT)[1]
    assert http(s1, "GET", f"/v1/acl/tokens?{none}", None, MGMT)[1] == []
    status, text, _ = http(s1, "GET", "/v1/acl/roles?filter=Name%20%3D%3D", None, MGMT)
    assert status == 400 and "Failed to create boolean expression evaluator" in str(text)
    cases: list[tuple[str, str, Any, str | None, int, str]] = [
        ("GET", "/v1/catalog/services", None, "not-a-token", 403, "ACL not found"),
        ("GET", "/v1/catalog/services", None, "x" * 4000, 403, "ACL not found"),
        ("GET", "/v1/acl/token/not-a-uuid", None, MGMT, 400, "not a UUID"),
        (
            "GET",
            "/v1/acl/token/00000000-0000-0000-0000-0000000000aa",
            None,
            MGMT,
            404,
            "ACL not found",
        ),
        (
            "DELETE",
            "/v1/acl/policy/00000000-0000-0000-0000-0000000000aa",
            None,
            MGMT,
            404,
            "Cannot find",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            {"Name": "p", "Rules": 'key "a" { policy = }'},
            MGMT,
            400,
            "At 1:",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            {"Name": "p", "Rules": 'key "a" { policy = "lst" }'},
            MGMT,
            400,
            "invalid policy",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            {"Name": "p", "Rules": 'key "k" { policy = "read" }\n' * 4000},
            MGMT,
            400,
            "too large",
        ),
        (
            "PUT",
            "/v1/acl/policy",
            {"Name": "bad name!", "Rules": ""},
            MGMT,
            400,
            "Invalid Policy Name",
        ),
        ("PUT", "/v1/acl/policy", "{not json", MGMT, 400, ""),
        ("PUT", "/v1/acl/token", {"Policies": [{"Name": "nope"}]}, MGMT, 400, "cannot find policy"),
        (
            "PUT",
            "/v1/acl/token",
            {"ExpirationTime": "2001-01-01T00:00:00Z"},
            MGMT,
            400,
            "in the past",
        ),
        ("PUT", "/v1/acl/token", {"SecretID": "short"}, MGMT, 400, "not a UUID"),
        ("PUT", "/v1/acl/policy", {"Name": "p", "Rules": ""}, None, 403, "acl:write"),
    ]
    for method, path, body, token, want_status, want_text in cases:
        status, text, _ = http(s1, method, path, body, token)
        assert status == want_status, (path, body, status, text)
        assert want_text in str(text), (path, text)
    assert http(s1, "GET", "/v1/acl/policies", token=MGMT)[1] == before

    # An expired token no longer resolves.
    tok = make_token(s1, "short-lived", 'service_prefix "" { policy = "read" }', ExpirationTTL="2s")
    assert http(s1, "GET", "/v1/catalog/services", token=tok["SecretID"])[0] == 200
    wait_until(
        lambda: http(s1, "GET", "/v1/catalog/services", token=tok["SecretID"])[0] == 403,
        what="token expiry",
    )
    # The agent kept serving through all of it.
    assert http(s1, "GET", "/v1/status/leader")[0] == 200


def test_bootstrap_once_then_reset(cluster: Cluster, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "s1", {"enabled": True, "default_policy": "deny"})
    data = tmp_path / "data"
    s1 = cluster.server("s1", "--config-file", cfg, "--data-dir", str(data))
    status, token, _ = http(s1, "PUT", "/v1/acl/bootstrap")
    assert status == 200, token
    assert token["Policies"] == [
        {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}
    ]
    assert http(s1, "GET", "/v1/acl/tokens", token=token["SecretID"])[0] == 200
    status, text, _ = http(s1, "PUT", "/v1/acl/bootstrap")
    assert status == 403
    assert text.startswith("ACL bootstrap no longer allowed (reset index: ")
    reset = text.rsplit(" ", 1)[1].rstrip(")")
    (data / "acl-bootstrap-reset").write_text(reset + "\n")
    status, again, _ = http(s1, "PUT", "/v1/acl/bootstrap")
    assert status == 200, again
    assert again["SecretID"] != token["SecretID"]


def test_acl_endpoints_answer_401_when_disabled(cluster: Cluster) -> None:
    s1 = cluster.server("s1")
    for method, path in [
        ("GET", "/v1/acl/tokens"),
        ("PUT", "/v1/acl/bootstrap"),
        ("GET", "/v1/acl/policies"),
    ]:
        status, text, _ = http(s1, method, path)
        assert (status, text) == (401, "ACL support disabled")
    # Everything else keeps working without tokens.
    assert http(s1, "PUT", "/v1/kv/k", "v")[0] == 200


def test_py_consul_with_a_token(cluster: Cluster, tmp_path: Path) -> None:
    s1 = acl_server(cluster, tmp_path)
    host, port = s1.http_addr.split(":")
    tok = make_token(s1, "kv-rw", 'key_prefix "cfg/" { policy = "write" }')
    c = consul.Consul(host=host, port=int(port), token=tok["SecretID"])
    assert c.kv.put("cfg/a", "1") is True
    _, item = c.kv.get("cfg/a")
    assert item["Value"] == b"1"
    with pytest.raises(consul.ACLPermissionDenied):
        c.kv.put("other", "1")
    anonymous = consul.Consul(host=host, port=int(port))
    with pytest.raises(consul.ACLPermissionDenied):
        anonymous.kv.get("cfg/a")


def test_etcd_servers_share_acls_and_a_delete_takes_effect_everywhere(
    cluster: Cluster,
    tmp_path: Path,
    etcd_server,  # type: ignore[no-untyped-def]
    dc: str,
) -> None:
    etcd = ["--store", "etcd", "--etcd-endpoints", etcd_server.endpoint, "--datacenter", dc]
    s1 = acl_server(cluster, tmp_path, "s1", *etcd)
    s2 = acl_server(cluster, tmp_path, "s2", *etcd)
    tok = make_token(s1, "kv-read", 'key_prefix "" { policy = "read" }')
    assert http(s2, "PUT", "/v1/kv/shared", "v", MGMT)[0] == 200
    assert http(s2, "GET", "/v1/kv/shared?raw", token=tok["SecretID"])[1] == "v"
    status, _, _ = http(s1, "DELETE", f"/v1/acl/token/{tok['AccessorID']}", token=MGMT)
    assert status == 200
    wait_until(
        lambda: http(s2, "GET", "/v1/kv/shared?raw", token=tok["SecretID"])[0] == 403,
        what="s2 to forget the deleted token",
    )


def test_a_token_of_another_datacenter_is_not_known_here(cluster: Cluster, tmp_path: Path) -> None:
    a1 = acl_server(cluster, tmp_path, "a1", "--datacenter", "dca", primary_datacenter="dca")
    b1 = acl_server(
        cluster,
        tmp_path,
        "b1",
        "--datacenter",
        "dcb",
        "--retry-join-wan",
        a1.rpc_addr,
        primary_datacenter="dca",
    )
    wait_until(
        lambda: "dcb" in (http(a1, "GET", "/v1/catalog/datacenters")[1] or []),
        timeout=30,
        what="WAN join",
    )
    tok = make_token(b1, "b-kv", 'key_prefix "" { policy = "write" }')
    assert http(b1, "PUT", "/v1/kv/x", "1", tok["SecretID"])[0] == 200
    # Sent to dca: unknown there.
    status, text, _ = http(a1, "PUT", "/v1/kv/x", "2", tok["SecretID"])
    assert (status, text) == (403, "ACL not found")
    assert http(a1, "GET", "/v1/kv/x", token=MGMT)[0] == 404
    # Forwarded to dcb with ?dc=: resolved where it lives.
    assert http(a1, "GET", "/v1/kv/x?raw&dc=dcb", token=tok["SecretID"])[1] == 1

    # Tokens of the primary datacenter (dca) are global: dcb asks dca for them...
    rules = 'key_prefix "" { policy = "write" }'
    global_tok = make_token(a1, "global-kv", rules)
    assert http(b1, "PUT", "/v1/kv/g", "1", global_tok["SecretID"])[0] == 200
    # ...unless they are Local, or their policy is for other datacenters only.
    local_tok = make_token(a1, "local-kv", rules, Local=True)
    status, text, _ = http(b1, "PUT", "/v1/kv/g", "2", local_tok["SecretID"])
    assert (status, text) == (403, "ACL not found")
    status, policy, _ = http(
        a1,
        "PUT",
        "/v1/acl/policy",
        {"Name": "dca-only", "Rules": rules, "Datacenters": ["dca"]},
        MGMT,
    )
    assert status == 200, policy
    _, scoped, _ = http(a1, "PUT", "/v1/acl/token", {"Policies": [{"ID": policy["ID"]}]}, MGMT)
    assert http(a1, "PUT", "/v1/kv/s", "1", scoped["SecretID"])[0] == 200
    status, text, _ = http(b1, "PUT", "/v1/kv/s", "1", scoped["SecretID"])
    assert status == 403 and "lacks permission 'key:write'" in text
    assert http(b1, "GET", "/v1/kv/g?raw", token=MGMT)[1] == 1


def test_agent_tokens_set_at_run_time_and_agent_routes(cluster: Cluster, tmp_path: Path) -> None:
    s1 = acl_server(cluster, tmp_path)
    reader = make_token(s1, "svc-read", 'service_prefix "" { policy = "read" }')
    # No default token yet: anonymous sees nothing.
    assert http(s1, "GET", "/v1/catalog/services")[1] == {}
    status, text, _ = http(s1, "PUT", "/v1/agent/token/default", {"Token": reader["SecretID"]})
    assert status == 403 and "acl:write" in text
    assert http(s1, "PUT", "/v1/agent/token/nope", {"Token": "x"}, MGMT)[0] == 404
    status, _, _ = http(s1, "PUT", "/v1/agent/token/default", {"Token": reader["SecretID"]}, MGMT)
    assert status == 200
    # Requests without a token now use the default token.
    assert "consul" in http(s1, "GET", "/v1/catalog/services")[1]
    # Agent routes outside the endpoints are checked too.
    assert http(s1, "GET", "/v1/agent/metrics")[0] == 403
    assert http(s1, "GET", "/v1/agent/metrics", token=MGMT)[0] == 200
    assert http(s1, "PUT", "/v1/agent/leave")[0] == 403
    assert http(s1, "GET", "/v1/agent/self")[0] == 403
    assert http(s1, "GET", "/v1/agent/self", token=MGMT)[0] == 200
    # Snapshots need a management token; config entries their service's write.
    assert http(s1, "GET", "/v1/snapshot", token=reader["SecretID"])[0] == 403
    entry = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
    status, text, _ = http(s1, "PUT", "/v1/config", entry, reader["SecretID"])
    assert status == 403 and "service:write" in text
    assert http(s1, "PUT", "/v1/config", entry, MGMT)[0] == 200
    assert http(s1, "GET", "/v1/config/service-defaults/web", token=reader["SecretID"])[0] == 200


def test_cli_acl_commands_with_consul_http_token(cluster: Cluster, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    s1 = acl_server(cluster, tmp_path)
    env = {**os.environ, "CONSUL_HTTP_ADDR": s1.http_addr, "CONSUL_HTTP_TOKEN": MGMT}

    def cli(*args: str, token_env: bool = True) -> tuple[int, str, str]:
        e = env if token_env else {k: v for k, v in env.items() if k != "CONSUL_HTTP_TOKEN"}
        done = subprocess.run(
            [sys.executable, "-m", "agent.cli", "acl", *args],
            env=e,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode, done.stdout, done.stderr

    rules = tmp_path / "rules.hcl"
    rules.write_text('key_prefix "cli/" { policy = "write" }\n')
    rc, out, err = cli("policy", "create", "-name", "cli-kv", "-rules", f"@{rules}")
    assert rc == 0, err
    assert json.loads(out)["Name"] == "cli-kv"
    rc, out, err = cli("token", "create", "-description", "from cli", "-policy-name", "cli-kv")
    assert rc == 0, err
    token = json.loads(out)
    rc, out, _ = cli("token", "list")
    assert token["AccessorID"] in {t["AccessorID"] for t in json.loads(out)}
    rc, out, _ = cli("policy", "read", "-name", "cli-kv")
    assert "cli/" in json.loads(out)["Rules"]
    assert http(s1, "PUT", "/v1/kv/cli/x", "1", token["SecretID"])[0] == 200
    rc, _, err = cli("policy", "list", token_env=False)
    assert rc == 1 and "403" in err
    rc, _, err = cli("token", "delete", "-id", token["AccessorID"])
    assert rc == 0, err
    assert http(s1, "PUT", "/v1/kv/cli/x", "2", token["SecretID"])[0] == 403


def test_jwt_auth_method_login_and_logout(cluster: Cluster, tmp_path: Path) -> None:
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    def sign(claims: dict[str, Any], signer: Any = key) -> str:
        base = {"iss": "https://issuer.test", "aud": "consul", "exp": int(time.time()) + 600}
        return jwt.encode({**base, **claims}, signer, algorithm="RS256")

    s1 = acl_server(cluster, tmp_path)
    method = {
        "Name": "ci",
        "Type": "jwt",
        "MaxTokenTTL": "10m",
        "Config": {
            "JWTValidationPubKeys": [pem],
            "BoundIssuer": "https://issuer.test",
            "BoundAudiences": ["consul"],
            "ClaimMappings": {"svc": "service", "team": "team"},
        },
    }
    status, body, _ = http(s1, "PUT", "/v1/acl/auth-method", method, MGMT)
    assert status == 200, body
    bad_method = {**method, "Name": "bad", "Config": {"JWTValidationPubKeys": ["nope"]}}
    assert http(s1, "PUT", "/v1/acl/auth-method", bad_method, MGMT)[0] == 400
    rule = {
        "AuthMethod": "ci",
        "Selector": 'value.team == "web"',
        "BindType": "service",
        "BindName": "${value.service}",
    }
    status, body, _ = http(s1, "PUT", "/v1/acl/binding-rule", rule, MGMT)
    assert status == 200, body
    bad_rule = {**rule, "Selector": "value.team ==="}
    assert http(s1, "PUT", "/v1/acl/binding-rule", bad_rule, MGMT)[0] == 400

    login = {"AuthMethod": "ci", "BearerToken": sign({"svc": "web", "team": "web"})}
    status, token, _ = http(s1, "POST", "/v1/acl/login", login)
    assert status == 200, token
    assert token["ServiceIdentities"] == [{"ServiceName": "web"}]
    assert token["AuthMethod"] == "ci" and token["ExpirationTime"]
    secret = token["SecretID"]
    assert http(s1, "PUT", "/v1/agent/service/register", {"Name": "web"}, secret)[0] == 200
    assert http(s1, "PUT", "/v1/agent/service/register", {"Name": "db"}, secret)[0] == 403

    # Refused credentials: another key, another issuer, expired, no rule matched, garbage.
    refused = [
        sign({"svc": "web", "team": "web"}, other),
        sign({"svc": "web", "team": "web", "iss": "https://evil.test"}),
        sign({"svc": "web", "team": "web", "exp": int(time.time()) - 60}),
        sign({"svc": "web", "team": "ops"}),
    ]
    for bearer in refused:
        status, text, _ = http(
            s1, "POST", "/v1/acl/login", {"AuthMethod": "ci", "BearerToken": bearer}
        )
        assert status == 403, text
    assert http(s1, "POST", "/v1/acl/login", {"AuthMethod": "ci", "BearerToken": "x.y"})[0] == 403
    assert http(s1, "POST", "/v1/acl/login", {"AuthMethod": "nope", "BearerToken": "x"})[0] == 404

    # Logout deletes the login token; a token not made by login cannot log out.
    assert http(s1, "POST", "/v1/acl/logout", token=secret)[0] == 200
    assert http(s1, "GET", "/v1/acl/token/self", token=secret)[0] == 403
    assert http(s1, "POST", "/v1/acl/logout", token=MGMT)[0] == 403


def test_views_serve_every_token_filtered_at_read_time(cluster: Cluster, tmp_path: Path) -> None:
    """A client agent with ACLs on answers reads from its views (one view per
    key, whatever the token) and filters each answer for its caller's token:
    a token for ``web`` alone sees ``web`` and never ``db``; its blocking read
    is woken from the view; a token with no rights gets 403."""
    s1 = acl_server(cluster, tmp_path)
    agent_tok = make_token(
        s1,
        "c2-agent",
        'node_prefix "" { policy = "write" }\nservice_prefix "" { policy = "read" }',
    )
    web_only = make_token(
        s1, "web-only", 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }'
    )
    c_acl = {"enabled": True, "default_policy": "deny", "tokens": {"agent": agent_tok["SecretID"]}}
    c2 = cluster.client(
        "c2", "--retry-join", s1.rpc_addr, "--config-file", config_file(tmp_path, "c2", c_acl),
        wait=False,
    )
    c2.wait_ready()
    for svc in ("web", "db"):
        body = {"Node": f"ext-{svc}", "Address": "10.9.0.1", "Service": {"Service": svc}}
        assert http(s1, "PUT", "/v1/catalog/register", body, MGMT)[0] == 200

    def names(token: str) -> Any:
        status, body, _ = http(c2, "GET", "/v1/catalog/services", token=token)
        return status, sorted(body) if status == 200 else body

    wait_until(lambda: names(MGMT) == (200, ["consul", "db", "web"]), what="everything for mgmt")
    assert names(web_only["SecretID"]) == (200, ["web"])
    status, entries, headers = http(c2, "GET", "/v1/health/service/db", token=web_only["SecretID"])
    assert (status, entries) == (200, [])
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    status, entries, headers = http(c2, "GET", "/v1/health/service/web", token=web_only["SecretID"])
    assert status == 200 and [e["Service"]["Service"] for e in entries] == ["web"]
    # The reads came from the client agent's views.
    status, metrics, _ = http(c2, "GET", "/v1/agent/metrics", token=MGMT)
    gauges = {g["Name"]: g["Value"] for g in metrics["Gauges"]}
    counters = {c["Name"]: c["Count"] for c in metrics["Counters"]}
    views = {k: v for k, v in {**gauges, **counters}.items() if "view" in k}
    assert views["consul.views.connected"] >= 2, views  # the agent token may subscribe
    assert views["consul.views.hits"] + views["consul.views.misses"] >= 4, views
    assert views["consul.views.delegated"] == 0, views
    # A key the agent's own token may not read: its view is refused by the
    # servers, and the read goes to a server, which answers for the caller.
    assert http(c2, "PUT", "/v1/kv/app/x", "1", MGMT)[0] == 200
    status, pairs, _ = http(c2, "GET", "/v1/kv/app/x", token=MGMT)
    assert status == 200 and pairs[0]["Key"] == "app/x"
    assert http(c2, "GET", "/v1/kv/app/x", token=web_only["SecretID"])[0] == 403
