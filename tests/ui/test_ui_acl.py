"""The UI with ACLs on: token login, what a token may see, and the Tokens/Policies/Roles pages.

One dev agent for the module, with ``acl { enabled, default_policy = "deny" }``
and no initial token: the test bootstraps the management token itself
(``PUT /v1/acl/bootstrap``), as an operator would. Services are registered in
the catalog with that token. Every check is a Playwright ``expect`` (a bounded
poll of the page); each test's browser context is fresh (no stored token).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.procs import AgentProcess, Cluster, wait_until


def http(
    agent: AgentProcess, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=data, method=method)
    if token is not None:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if text.strip() else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


class AclAgent:
    """The dev agent, its bootstrapped management token and a token that may read only ``web``."""

    def __init__(self, agent: AgentProcess, management: str, web_reader: dict[str, Any]) -> None:
        self.agent = agent
        self.management = management
        self.web_reader = web_reader

    @property
    def base(self) -> str:
        return f"http://{self.agent.http_addr}"


@pytest.fixture(scope="module")
def acl_agent(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AclAgent]:
    tmp = tmp_path_factory.mktemp("ui-acl")
    cfg = tmp / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
    cluster = Cluster(tmp_path_factory.mktemp("logs"))
    failed_before = request.session.testsfailed
    try:
        dev = cluster.server("dev", "--dev", "--config-file", str(cfg))
        boot: dict[str, Any] = {}

        def bootstrapped() -> bool:
            status, body = http(dev, "PUT", "/v1/acl/bootstrap")
            if status == 200:
                boot.update(body)
            return status == 200

        wait_until(bootstrapped, what="ACL bootstrap")
        mgmt = boot["SecretID"]
        for name in ("web", "db"):
            body = {
                "Node": "app-1",
                "Address": "10.0.0.5",
                "Service": {"Service": name, "ID": f"{name}-1", "Port": 8080},
            }
            assert http(dev, "PUT", "/v1/catalog/register", body, mgmt) == (200, True)
        # The UI's services list is Consul's: an instance shows when its service
        # and its node may be read.
        rules = 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }'
        policy_body = {"Name": "web-read", "Rules": rules}
        status, policy = http(dev, "PUT", "/v1/acl/policy", policy_body, mgmt)
        assert status == 200, policy
        token_body = {"Description": "web reader", "Policies": [{"ID": policy["ID"]}]}
        status, reader = http(dev, "PUT", "/v1/acl/token", token_body, mgmt)
        assert status == 200, reader
        yield AclAgent(dev, mgmt, reader)
    finally:
        cluster.stop_all()
        if request.session.testsfailed > failed_before:
            print("\n" + cluster.dump_logs())


def log_in(page: Page, secret: str) -> None:
    page.get_by_role("button", name="Log in", exact=True).click()
    dialog = page.get_by_role("dialog", name="Log in with a token")
    dialog.get_by_label("Token").fill(secret)
    dialog.get_by_role("button", name="Log in", exact=True).click()


def test_log_in_with_a_token_and_see_what_it_may_see(acl_agent: AclAgent, page: Page) -> None:
    page.goto(f"{acl_agent.base}/ui/")
    # Anonymous under default deny: the agent may not be read, yet the UI finds
    # its datacenter, shows ACLs on, and an empty (filtered) services list.
    expect(page).to_have_url(f"{acl_agent.base}/ui/dc1/services/")
    header = page.locator("header.top")
    expect(header).to_have_attribute("data-acl", "on")
    expect(page.get_by_text("No services registered yet.")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Tokens", "Policies", "Roles"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()

    # A token the servers do not know: Consul's answer, in the dialog.
    log_in(page, "not-a-real-token")
    dialog = page.get_by_role("dialog", name="Log in with a token")
    expect(dialog.get_by_role("alert")).to_contain_text("ACL not found")
    assert page.evaluate("localStorage.getItem('consul-grpc.token')") is None
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()

    # The web reader, by keyboard: sees web, not db; the header names the token.
    page.get_by_role("button", name="Log in", exact=True).focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_label("Token")).to_be_focused()
    page.keyboard.type(acl_agent.web_reader["SecretID"])
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("[data-service=web]")).to_be_visible()
    expect(page.locator("[data-service=db]")).to_have_count(0)
    expect(page.locator("[data-service]")).to_have_count(1)
    whoami = page.locator(".whoami")
    expect(whoami).to_contain_text("web reader")
    expect(whoami).to_have_attribute("data-accessor", acl_agent.web_reader["AccessorID"])
    assert (
        page.evaluate("localStorage.getItem('consul-grpc.token')")
        == (acl_agent.web_reader["SecretID"])
    )
    # Every request sends it: a reload keeps the login.
    page.reload()
    expect(page.locator("[data-service=web]")).to_be_visible()
    # A page it may not read says so in place.
    nav.get_by_role("link", name="Tokens").click()
    expect(page.get_by_role("alert")).to_contain_text("Access denied")
    expect(page.get_by_role("alert")).to_contain_text("acl:read")
    page.get_by_role("button", name="Log in with another token").click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Log out: the token is gone and so is web.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    assert page.evaluate("localStorage.getItem('consul-grpc.token')") is None
    nav.get_by_role("link", name="Services").click()
    expect(page.get_by_text("No services registered yet.")).to_be_visible()
    assert page.errors == []  # type: ignore[attr-defined]


def test_manage_policies_tokens_and_roles(acl_agent: AclAgent, page: Page) -> None:
    mgmt = acl_agent.management
    page.goto(f"{acl_agent.base}/ui/dc1/services/")
    log_in(page, mgmt)
    expect(page.locator(".whoami")).to_contain_text("Bootstrap Token")
    expect(page.locator("[data-service=db]")).to_be_visible()

    # A policy: a rule syntax error is shown in place, with its position.
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Policies").click()
    expect(page.locator("[data-policy=global-management]")).to_be_visible()
    page.get_by_role("link", name="Create").click()
    page.get_by_label("Name").fill("kv-team")
    page.get_by_label("Description").fill("The team's keys")
    rules = page.get_by_label("Rules")
    rules.fill('key_prefix "team/" {\n  policy = "write"\n  oops\n}')
    page.get_by_role("button", name="Create").click()
    problem = page.locator("#rules-error")
    expect(problem).to_contain_text("The rules do not parse (line 4, column 1)")
    expect(problem).to_contain_text("Failed to parse ACL rules")
    expect(rules).to_have_attribute("aria-invalid", "true")
    expect(rules).to_be_focused()
    rules.fill('key_prefix "team/" {\n  policy = "write"\n}')
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{acl_agent.base}/ui/dc1/acls/policies")
    expect(page.locator("[data-policy=kv-team]")).to_be_visible()
    status, stored = http(acl_agent.agent, "GET", "/v1/acl/policy/name/kv-team", token=mgmt)
    assert status == 200 and 'key_prefix "team/"' in stored["Rules"], stored

    # A role with that policy.
    page.get_by_role("navigation", name="Access controls").get_by_role("link", name="Roles").click()
    page.get_by_role("link", name="Create").click()
    page.get_by_label("Name").fill("team")
    page.get_by_label("kv-team").check()
    page.get_by_role("button", name="Create").click()
    role_row = page.locator("[data-role=team]")
    expect(role_row.get_by_role("link", name="kv-team")).to_be_visible()

    # A token with the policy and the role; its detail page shows its IDs.
    nav.get_by_role("link", name="Tokens").click()
    expect(page.locator(".kind.you")).to_have_count(1)  # the bootstrap token is ours
    page.get_by_role("link", name="Create").click()
    page.get_by_label("Description").fill("team deployer")
    page.get_by_role("group", name="Policies").get_by_label("kv-team").check()
    page.get_by_role("group", name="Roles").get_by_label("team").check()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", name="team deployer")).to_be_visible()
    accessor = page.locator("[data-field=accessor]").inner_text()
    status, token = http(acl_agent.agent, "GET", f"/v1/acl/token/{accessor}", token=mgmt)
    assert status == 200, token
    assert [p["Name"] for p in token["Policies"]] == ["kv-team"]
    assert [r["Name"] for r in token["Roles"]] == ["team"]
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-field=secret]")).to_have_text(token["SecretID"])
    # Edit it in place: the page re-reads it.
    page.get_by_label("Description").fill("team deployer v2")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="team deployer v2")).to_be_visible()
    status, token = http(acl_agent.agent, "GET", f"/v1/acl/token/{accessor}", token=mgmt)
    assert (status, token["Description"]) == (200, "team deployer v2"), token
    assert [p["Name"] for p in token["Policies"]] == ["kv-team"]

    # Narrow screen: the ACL pages fit.
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.set_viewport_size({"width": 1280, "height": 800})

    # Delete it; the list no longer has it.
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(f"{acl_agent.base}/ui/dc1/acls/tokens")
    expect(page.locator(f"[data-token='{accessor}']")).to_have_count(0)
    expect(page.locator("[data-token]")).to_have_count(3)  # anonymous, bootstrap, web reader
    assert http(acl_agent.agent, "GET", f"/v1/acl/token/{accessor}", token=mgmt)[0] == 404

    # Delete the role; edit the policy, then delete it.
    tabs = page.get_by_role("navigation", name="Access controls")
    tabs.get_by_role("link", name="Roles").click()
    page.locator("[data-role=team]").get_by_role("link", name="team", exact=True).click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(f"{acl_agent.base}/ui/dc1/acls/roles")
    expect(page.get_by_text("No roles yet.")).to_be_visible()
    tabs.get_by_role("link", name="Policies").click()
    page.locator("[data-policy=kv-team]").get_by_role("link", name="kv-team").click()
    expect(page.get_by_label("Rules")).to_have_value('key_prefix "team/" {\n  policy = "write"\n}')
    page.get_by_label("Description").fill("The team's keys, read-write")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("[data-policy=kv-team]")).to_contain_text("The team's keys, read-write")
    page.locator("[data-policy=kv-team]").get_by_role("link", name="kv-team").click()
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page).to_have_url(f"{acl_agent.base}/ui/dc1/acls/policies")
    expect(page.locator("[data-policy=kv-team]")).to_have_count(0)
    assert http(acl_agent.agent, "GET", "/v1/acl/policy/name/kv-team", token=mgmt)[0] == 404

    # Log out.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Access denied")
    assert page.evaluate("localStorage.getItem('consul-grpc.token')") is None
    assert page.errors == []  # type: ignore[attr-defined]
