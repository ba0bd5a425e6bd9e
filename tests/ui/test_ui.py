"""The web UI in a real headless Chromium against real agent processes.

Every check is a Playwright ``expect`` (a bounded poll of the page), never a
sleep. The page is never reloaded where the test says "live": a marker set on
``window`` must still be there afterwards.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.procs import AgentProcess, Cluster, wait_until
from tests.ui.conftest import SCREENSHOTS


def http(agent: AgentProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if text.strip() else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def register(agent: AgentProcess, name: str, sid: str, port: int, tags: list[str]) -> None:
    body = {"Name": name, "ID": sid, "Port": port, "Tags": tags, "Check": {"TTL": "10m"}}
    assert http(agent, "PUT", "/v1/agent/service/register", body)[0] == 200


def check(agent: AgentProcess, sid: str, state: str, note: str) -> None:
    path = f"/v1/agent/check/{state}/service:{sid}?note={urllib.request.quote(note)}"
    assert http(agent, "PUT", path)[0] == 200


def readme_shot(page: Page, name: str) -> None:
    """The README's ``docs/screenshots/<name>``: a desktop window, cropped to the page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1100, "height": 400})
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def mark_no_reload(page: Page) -> None:
    page.evaluate("window.__stillHere = true")


def assert_no_reload(page: Page) -> None:
    assert page.evaluate("window.__stillHere === true"), "the page was reloaded"


@pytest.fixture
def agent(cluster: Cluster) -> AgentProcess:
    """A server agent with the UI (memory store) and a client agent beside it, also with the UI:
    the browser talks to the client, whose reads go through its router to the server."""
    server = cluster.server("s1", "--ui")
    return cluster.client("web-host", "--retry-join", server.rpc_addr, "--ui")


def test_services_list_is_live_and_shows_check_output(agent: AgentProcess, page: Page) -> None:
    for name, port, tags in (
        ("billing", 9090, ["v2", "grpc"]),
        ("cache", 6379, ["redis"]),
        ("search", 9200, ["v7", "http"]),
    ):
        register(agent, name, f"{name}-1", port, tags)
        check(agent, f"{name}-1", "pass", f"{name} is healthy")
    check(agent, "cache-1", "warn", "memory at 91%")

    page.goto(f"http://{agent.http_addr}/")
    expect(page).to_have_url(f"http://{agent.http_addr}/ui/dc1/services/")
    expect(page.locator("[data-service=billing]")).to_be_visible()
    mark_no_reload(page)

    # A service appears, then turns critical, with no reload.
    register(agent, "web", "web-1", 8080, ["v1", "http"])
    check(agent, "web-1", "pass", "HTTP GET /health: 200 OK")
    row = page.locator("[data-service=web]")
    expect(row).to_have_attribute("data-health", "passing")
    check(agent, "web-1", "fail", "HTTP GET /health: 503 Service Unavailable")
    expect(row).to_have_attribute("data-health", "critical")
    expect(row.get_by_text("1 instance")).to_be_visible()
    assert_no_reload(page)

    # Filters: health and tag, then search.
    page.get_by_label("Health").select_option("critical")
    expect(page.locator("[data-service]")).to_have_count(1)
    page.get_by_label("Health").select_option("")
    page.get_by_label("Tag", exact=True).select_option("http")
    expect(page.locator("[data-service]")).to_have_count(2)  # web, search
    page.get_by_label("Tag", exact=True).select_option("")
    page.keyboard.press("/")
    page.keyboard.type("bill")
    expect(page.locator("[data-service]")).to_have_count(1)
    page.get_by_label("Search", exact=True).fill("")
    page.keyboard.press("Escape")
    expect(page.locator("[data-service=consul]")).to_be_visible()
    readme_shot(page, "services.png")

    # Its instances, and a check's output.
    row.get_by_role("link", name="web").click()
    expect(page).to_have_url(f"http://{agent.http_addr}/ui/dc1/services/web")
    instance = page.locator("[data-instance=web-1]")
    expect(instance.get_by_role("link", name="web-host")).to_be_visible()
    expect(instance.get_by_text("127.0.0.1:8080")).to_be_visible()
    output = instance.locator("[data-check='service:web-1'] .output")
    expect(output).to_have_text("HTTP GET /health: 503 Service Unavailable")
    # The instance page is live too.
    check(agent, "web-1", "pass", "HTTP GET /health: 200 OK again")
    expect(output).to_have_text("HTTP GET /health: 200 OK again")
    assert_no_reload(page)
    assert page.errors == []  # type: ignore[attr-defined]


def kv_value(agent: AgentProcess, key: str) -> tuple[int, str | None, int]:
    status, body = http(agent, "GET", f"/v1/kv/{key}")
    if status != 200:
        return status, None, 0
    pair = body[0]
    value = base64.b64decode(pair["Value"]).decode() if pair["Value"] else ""
    return status, value, pair["Flags"]


YAML = """replicas: 5
zones: [eu-west-1a, eu-west-1b]
limits:
  cpu: 500m
  memory: 256Mi
"""


def test_kv_create_edit_delete_key_and_folder(
    agent: AgentProcess, page: Page, tmp_path: Path
) -> None:
    base = f"http://{agent.http_addr}/ui/dc1/kv/"
    page.goto(base)
    expect(page.get_by_text("This folder is empty.")).to_be_visible()

    # A folder.
    page.get_by_role("link", name="Create").click()
    page.get_by_label("Key or folder").fill("team/")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(base + "team/")
    wait_until(lambda: kv_value(agent, "team/")[0] == 200, what="team/ stored")

    # A key in it, with flags, as JSON.
    page.get_by_role("link", name="Create").click()
    page.get_by_label("Key or folder").fill("settings")
    page.get_by_label("JSON").check()
    value = page.get_by_label("Value")
    value.fill('{"replicas": 3,')
    expect(page.locator("#value-check")).to_contain_text("Invalid JSON")
    value.fill('{"replicas": 3}')
    expect(page.locator("#value-check")).to_have_text("Valid JSON")
    page.get_by_label("Flags").fill("42")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(base + "team/")
    assert kv_value(agent, "team/settings") == (200, '{"replicas": 3}', 42)

    # Edit it: YAML view validates YAML.
    page.get_by_role("link", name="settings").click()
    expect(page).to_have_url(base + "team/settings/edit")
    expect(page.get_by_label("JSON")).to_be_checked()
    expect(page.get_by_label("Value")).to_have_value('{"replicas": 3}')
    page.get_by_label("YAML").check()
    page.get_by_label("Value").fill("replicas: 5\nzones: [a, b")
    expect(page.locator("#value-check")).to_contain_text("Invalid YAML")
    page.get_by_label("Value").fill(YAML)
    expect(page.locator("#value-check")).to_have_text("Valid YAML")
    page.get_by_label("Value").blur()
    readme_shot(page, "kv.png")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(base + "team/")
    assert kv_value(agent, "team/settings") == (200, YAML, 42)

    # Export the folder as `consul kv export` JSON, import it back under another name.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    exported = json.loads(Path(download.value.path()).read_text())
    assert {e["key"] for e in exported} == {"team/", "team/settings"}
    settings = next(e for e in exported if e["key"] == "team/settings")
    assert settings["flags"] == 42
    assert base64.b64decode(settings["value"]).decode() == YAML
    copy = [{**e, "key": e["key"].replace("team/", "copy/", 1)} for e in exported]
    import_file = tmp_path / "import.json"
    import_file.write_text(json.dumps(copy))
    page.get_by_label("Import file").set_input_files(str(import_file))
    expect(page.get_by_role("status")).to_have_text("Imported 2 keys")
    assert kv_value(agent, "copy/settings") == (200, YAML, 42)

    # Delete the key from its editor.
    page.get_by_role("link", name="settings").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(base + "team/")
    assert kv_value(agent, "team/settings")[0] == 404
    expect(page.get_by_text("This folder is empty.")).to_be_visible()

    # Breadcrumbs back to the root, then delete the folder from the list.
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Key/Value").click()
    expect(page).to_have_url(base)
    row = page.locator("[data-key='team/']")
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Yes, delete").click()
    expect(row).to_have_count(0)
    assert kv_value(agent, "team/")[0] == 404
    assert kv_value(agent, "copy/settings")[0] == 200  # only team/ went
    assert page.errors == []  # type: ignore[attr-defined]


def test_switch_datacenter(cluster: Cluster, page: Page) -> None:
    s1 = cluster.server("s1", "--ui", "--suspect-timeout", "2s")
    s2 = cluster.server(
        "s2", "--datacenter", "dc2", "--retry-join-wan", s1.rpc_addr, "--suspect-timeout", "2s"
    )
    register(s2, "only-in-dc2", "only-in-dc2-1", 7000, ["east"])
    wait_until(
        lambda: http(s1, "GET", "/v1/catalog/datacenters")[1] == ["dc1", "dc2"],
        what="dc2 known to dc1",
    )
    page.goto(f"http://{s1.http_addr}/ui/dc1/services/")
    expect(page.locator("[data-service=consul]")).to_be_visible()
    expect(page.locator("[data-service=only-in-dc2]")).to_have_count(0)
    page.get_by_label("Datacenter").select_option("dc2")
    expect(page).to_have_url(f"http://{s1.http_addr}/ui/dc2/services/")
    expect(page.locator("[data-service=only-in-dc2]")).to_be_visible()
    page.get_by_role("link", name="Nodes").click()
    expect(page.locator("[data-node=s2]")).to_be_visible()
    expect(page.locator("[data-node=s1]")).to_have_count(0)
    # dc2's leader, found through the WAN members.
    expect(page.locator("[data-node=s2] .leader")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_lost_agent_is_shown_in_place(cluster: Cluster, page: Page) -> None:
    dev = cluster.server("dev", "--dev")
    page.goto(f"http://{dev.http_addr}/ui/dc1/nodes/")
    expect(page.locator("[data-node=dev]")).to_be_visible()
    expect(page.get_by_text("★ Leader")).to_be_visible()
    dev.stop()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Agent unreachable")
    expect(page.locator("[data-node=dev]")).to_be_visible()  # the last data stays
    assert page.errors == []  # type: ignore[attr-defined]


def test_narrow_screen_and_keyboard(agent: AgentProcess, page: Page) -> None:
    register(agent, "web", "web-1", 8080, ["v1"])
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"http://{agent.http_addr}/ui/dc1/services/")
    expect(page.locator("[data-service=web]")).to_be_visible()
    # ACLs are off (/v1/acl/token/self: 401 "ACL support disabled"): no login, no ACL pages.
    expect(page.locator("header.top")).to_have_attribute("data-acl", "off")
    expect(page.get_by_role("link", name="Tokens")).to_have_count(0)
    expect(page.get_by_role("button", name="Log in")).to_have_count(0)
    # Nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # Keyboard: the skip link comes first and lands on the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("searchbox")).to_be_focused()
    assert page.errors == []  # type: ignore[attr-defined]
