"""``/v1/config`` through a client agent to a dev server, with Consul's answers."""

from __future__ import annotations

import json

from tests.integration.test_snapshot import http
from tests.support.procs import Cluster


def test_config_entries_over_http(cluster: Cluster) -> None:
    dev = cluster.server("cfg-dev", "--dev")
    client = cluster.client("cfg-c1", "--retry-join", dev.rpc_addr)
    addr = client.http_addr
    entry = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
    status, body, _ = http(addr, "PUT", "/v1/config", json.dumps(entry).encode())
    assert (status, json.loads(body)) == (200, True)
    status, body, headers = http(addr, "GET", "/v1/config/service-defaults/web")
    assert status == 200
    got = json.loads(body)
    assert got["Protocol"] == "http" and got["ModifyIndex"] == int(headers["X-Consul-Index"])
    # CAS with a stale index: false, nothing changed.
    stale = json.dumps({**entry, "Protocol": "grpc"}).encode()
    status, body, _ = http(addr, "PUT", "/v1/config?cas=1", stale)
    assert (status, json.loads(body)) == (200, False)
    status, body, _ = http(addr, "GET", "/v1/config/service-defaults")
    assert [e["Protocol"] for e in json.loads(body)] == ["http"]
    assert json.loads(http(addr, "GET", "/v1/config/service-router")[1]) == []
    # Consul's errors.
    status, body, _ = http(addr, "GET", "/v1/config/service-defaults/api")
    assert status == 404 and body == b'Config entry not found for "service-defaults" / "api"'
    status, body, _ = http(addr, "PUT", "/v1/config", b'{"Kind": "bogus", "Name": "x"}')
    assert status == 400 and b"invalid config entry kind: bogus" in body
    status, body, _ = http(addr, "PUT", "/v1/config", b"{not json")
    assert status == 400
    # Delete: {} plainly, a boolean with ?cas.
    modify = got["ModifyIndex"]
    status, body, _ = http(addr, "DELETE", "/v1/config/service-defaults/web?cas=1")
    assert (status, json.loads(body)) == (200, False)
    status, body, _ = http(addr, "DELETE", f"/v1/config/service-defaults/web?cas={modify}")
    assert (status, json.loads(body)) == (200, True)
    http(addr, "PUT", "/v1/config", json.dumps(entry).encode())
    status, body, _ = http(addr, "DELETE", "/v1/config/service-defaults/web")
    assert (status, json.loads(body)) == (200, {})
    assert http(addr, "GET", "/v1/config/service-defaults/web")[0] == 404
