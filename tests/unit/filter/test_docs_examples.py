"""The examples of Consul's "Filtering" API page, and the expressions users write."""

from __future__ import annotations

from typing import Any

import pytest

from agent.filter import apply_filter, compile_filter

# /v1/agent/services from the docs page, as a list of its values.
AGENT_SERVICES: list[dict[str, Any]] = [
    {
        "ID": "redis1",
        "Service": "redis",
        "Tags": ["primary", "production"],
        "Meta": {"env": "production", "foo": "bar"},
        "Port": 1234,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
    {
        "ID": "redis2",
        "Service": "redis",
        "Tags": ["secondary", "production"],
        "Meta": {"env": "production", "foo": "bar"},
        "Port": 1235,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
    {
        "ID": "redis3",
        "Service": "redis",
        "Tags": ["primary", "qa"],
        "Meta": {"env": "qa"},
        "Port": 1234,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
]


def _catalog_row(
    node: str, address: str, meta: dict[str, str], tags: list[str], env: str
) -> dict[str, Any]:
    return {
        "ID": f"id-{node}",
        "Node": node,
        "Address": address,
        "Datacenter": "dc1",
        "TaggedAddresses": None,
        "NodeMeta": meta,
        "ServiceKind": "",
        "ServiceID": "api-internal",
        "ServiceName": "api-internal",
        "ServiceTags": tags,
        "ServiceAddress": "",
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": {"environment": env},
        "ServicePort": 9090,
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {},
        "ServiceConnect": {},
        "CreateIndex": 30,
        "ModifyIndex": 30,
    }


# /v1/catalog/service/api-internal from the docs page.
CATALOG_SERVICE = [
    _catalog_row(
        "node-1", "198.18.0.1", {"agent": "true", "arch": "i386", "os": "darwin"}, ["tag"], "qa"
    ),
    _catalog_row(
        "node-2", "198.18.0.2", {"arch": "arm", "os": "linux"}, ["test", "tag"], "production"
    ),
    _catalog_row("node-4", "198.18.0.4", {"arch": "i386", "os": "freebsd"}, [], "qa"),
]

# /v1/health/node/node-1 from the docs page.
HEALTH_NODE = [
    {
        "Node": "node-1",
        "CheckID": "node-health",
        "Name": "Node level check",
        "Status": "critical",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Definition": {},
    },
    {
        "Node": "node-1",
        "CheckID": "svc-web-health",
        "Name": "Service level check - web",
        "Status": "warning",
        "ServiceID": "",
        "ServiceName": "web",
        "ServiceTags": [],
        "Definition": {},
    },
]


def _health_entry(
    node: str, tags: list[str], version: str | None, statuses: list[str]
) -> dict[str, Any]:
    meta = {"version": version} if version is not None else {}
    return {
        "Node": {
            "Node": node,
            "Address": "10.0.0.1",
            "Datacenter": "dc1",
            "Meta": {"rack-1": node},
        },
        "Service": {"ID": f"web-{node}", "Service": "web", "Tags": tags, "Meta": meta, "Port": 80},
        "Checks": [
            {"CheckID": f"check-{i}", "Status": status, "ServiceName": "web"}
            for i, status in enumerate(statuses)
        ],
    }


# /v1/health/service/web
HEALTH_SERVICE = [
    _health_entry("n1", ["primary", "v1"], "1.0", ["passing", "passing"]),
    _health_entry("n2", ["secondary"], "2.0", ["passing", "critical"]),
    _health_entry("n3", [], None, []),
]


def _ids(expression: str, rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row[key] for row in apply_filter(expression, rows, lambda row: row)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Meta.env == "qa"', ["redis3"]),  # the docs' example
        ('Meta.env != "qa"', ["redis1", "redis2"]),
        ('"primary" in Tags', ["redis1", "redis3"]),
        ('Tags contains "primary"', ["redis1", "redis3"]),
        ('Tags not contains "primary"', ["redis2"]),
        ('"primary" not in Tags', ["redis2"]),
        ("Meta.foo is empty", ["redis3"]),  # a missing key is empty
        ("Meta.foo is not empty", ["redis1", "redis2"]),
        ('Meta["foo"] == bar', ["redis1", "redis2"]),
        ("Port == 1235", ["redis2"]),
        ('Port == "1234"', ["redis1", "redis3"]),
        ("Weights.Passing == 1", ["redis1", "redis2", "redis3"]),
        ("EnableTagOverride == false", ["redis1", "redis2", "redis3"]),
        ("EnableTagOverride == true", []),
        ('ID matches "^redis[12]$"', ["redis1", "redis2"]),
        ('ID not matches "1"', ["redis2", "redis3"]),
        ("env in Meta", ["redis1", "redis2", "redis3"]),  # a map's keys
        ('"foo" not in Meta', ["redis3"]),
        ("Address is empty", ["redis1", "redis2", "redis3"]),
        ('Service == redis and Tags contains primary and Meta.env == "production"', ["redis1"]),
    ],
)
def test_agent_services(expression: str, expected: list[str]) -> None:
    assert _ids(expression, AGENT_SERVICES, "ID") == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('NodeMeta.os == "linux"', ["node-2"]),  # the docs' example
        ('NodeMeta.os != "linux"', ["node-1", "node-4"]),
        ("NodeMeta.agent == true", ["node-1"]),  # a string field: "true" as text
        ("NodeMeta.agent is not empty", ["node-1"]),
        ('ServiceTags contains "tag"', ["node-1", "node-2"]),
        ("ServiceTags is empty", ["node-4"]),
        ('ServiceMeta.environment == "qa" and NodeMeta.arch == i386', ["node-1", "node-4"]),
        # Go string escapes: a regexp backslash is doubled inside "...", not in `...`.
        (r'Address matches "^198\\.18\\.0\\.[24]$"', ["node-2", "node-4"]),
        (r"Address matches `^198\.18\.0\.1$`", ["node-1"]),
        ("ServicePort == 9090 and Datacenter == dc1", ["node-1", "node-2", "node-4"]),
        ('TaggedAddresses.lan == "x"', []),  # through a JSON null
        ("TaggedAddresses is empty", ["node-1", "node-2", "node-4"]),
        ("ServiceProxy is empty and ServiceConnect is empty", ["node-1", "node-2", "node-4"]),
        ('"/NodeMeta/os" == linux', ["node-2"]),  # JSON pointer selector
    ],
)
def test_catalog_service(expression: str, expected: list[str]) -> None:
    assert _ids(expression, CATALOG_SERVICE, "Node") == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('ServiceName != ""', ["svc-web-health"]),  # the docs' example
        ("ServiceName is empty", ["node-health"]),
        ("Status == critical or Status == warning", ["node-health", "svc-web-health"]),
        ('Name contains "web"', ["svc-web-health"]),  # substring
        ('"level" in Name', ["node-health", "svc-web-health"]),
    ],
)
def test_health_node(expression: str, expected: list[str]) -> None:
    assert _ids(expression, HEALTH_NODE, "CheckID") == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.Tags contains "primary"', ["n1"]),
        ('Service.Meta.version == "2.0"', ["n2"]),
        ("Service.Meta.version is empty", ["n3"]),
        ('Node.Meta["rack-1"] == n2', ["n2"]),
        ("Node.Node == n1 or Node.Node == n3", ["n1", "n3"]),
        # A selector through a list is an implicit "any", as in Consul.
        ("Checks.Status == critical", ["n2"]),
        ("Checks.Status == passing", ["n1", "n2"]),
        ("Checks.Status != passing", ["n2"]),  # some check is not passing
        ("not Checks.Status == critical", ["n1", "n3"]),  # no check is critical
        ("Checks is empty", ["n3"]),
        ("Checks.1.Status == critical", ["n2"]),
        # Explicit collection expressions.
        ("all Checks as c { c.Status == passing }", ["n1", "n3"]),  # vacuous for n3
        ("any Checks as c { c.Status == passing }", ["n1", "n2"]),
        ('any Service.Tags as tag { tag matches "^v[0-9]" }', ["n1"]),
        ('all Service.Tags as tag { tag != "secondary" }', ["n1", "n3"]),
        ('any Service.Meta as key { key == "version" }', ["n1", "n2"]),
        ('any Service.Meta as _, v { v == "2.0" }', ["n2"]),
        ("any Checks as i, c { i == 1 and c.Status == critical }", ["n2"]),
        ("any Missing as x { x == 1 }", []),
        ("all Missing as x { x == 1 }", ["n1", "n2", "n3"]),
    ],
)
def test_health_service(expression: str, expected: list[str]) -> None:
    names = [
        entry["Node"]["Node"]
        for entry in apply_filter(expression, HEALTH_SERVICE, lambda entry: entry)
    ]
    assert names == expected


def test_compiled_filter_is_reusable() -> None:
    flt = compile_filter('Service.Tags contains "primary"')
    assert [flt.matches(e) for e in HEALTH_SERVICE] == [True, False, False]
    assert compile_filter('Service.Tags contains "primary"') == flt
