// Drive an agent with the npm `consul` package (node-consul), unmodified: one
// named step per method of its API.
//
//   node node_consul.js --list                          names of the steps (JSON)
//   node node_consul.js DEV_HTTP ACL_HTTP MGMT_TOKEN    run them all, print JSON
//
// Every step runs in order (each makes its own names) and the runner prints
// one JSON object, step name -> "ok" or the error; tests/compat/test_node_consul.py
// has one test per step. `consul` resolves from the repository's node_modules
// (package.json devDependencies, installed by scripts/bootstrap).
"use strict";

const assert = require("node:assert/strict");
const Consul = require("consul");

const steps = [];
function step(name, fn) {
  steps.push([name, fn]);
}

let counter = 0;
function uid(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

async function poll(fn, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await fn();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function rejects(promise, status, match) {
  try {
    await promise;
  } catch (err) {
    if (status !== undefined) assert.equal(err.statusCode, status, String(err));
    if (match) assert.match(String(err.message), match);
    return err;
  }
  throw new Error("the call did not fail");
}

// ---------------------------------------------------------------- Agent

step("agent_members", async (x) => {
  const me = (await x.c.agent.members()).find((m) => m.Name === x.node);
  assert.equal(me.Status, 1);
  assert.ok(Array.isArray(await x.c.agent.members({ wan: true })));
});

step("agent_reload", async (x) => {
  await x.c.agent.reload();
});

step("agent_self", async (x) => {
  const me = await x.c.agent.self();
  assert.equal(me.Config.Datacenter, "dc1");
  assert.equal(me.Member.Name, x.node);
});

step("agent_maintenance", async (x) => {
  await x.c.agent.maintenance({ enable: true, reason: "upgrade" });
  assert.equal((await x.c.agent.checks())._node_maintenance.Notes, "upgrade");
  await x.c.agent.maintenance(false);
  assert.equal((await x.c.agent.checks())._node_maintenance, undefined);
});

step("agent_join", async (x) => {
  const member = (await x.c.agent.self()).Member;
  await x.c.agent.join({ address: `${member.Addr}:${member.Port}` });
});

step("agent_force_leave", async (x) => {
  await rejects(x.c.agent.forceLeave({ node: "no-such-node" }), 500, /No node found/);
});

step("agent_checks", async (x) => {
  const id = uid("chk");
  await x.c.agent.check.register({ name: "ttl", id, ttl: "30s" });
  assert.equal((await x.c.agent.checks())[id].Status, "critical");
  await x.c.agent.check.deregister(id);
});

step("agent_services", async (x) => {
  const id = uid("svc");
  await x.c.agent.service.register({ name: "web", id, port: 80, tags: ["a"] });
  const svc = (await x.c.agent.services())[id];
  assert.deepEqual([svc.Service, svc.Port, svc.Tags], ["web", 80, ["a"]]);
});

step("agent_check_list", async (x) => {
  const id = uid("chkl");
  await x.c.agent.check.register({ name: "listed", id, ttl: "30s", notes: "n" });
  assert.equal((await x.c.agent.check.list())[id].Notes, "n");
  await x.c.agent.check.deregister(id);
});

step("agent_check_register", async (x) => {
  const sid = uid("csvc");
  const id = uid("c");
  await x.c.agent.service.register({ name: "checked", id: sid });
  await x.c.agent.check.register({
    name: "script",
    id,
    serviceid: sid,
    args: ["/bin/true"],
    interval: "10s",
  });
  const check = (await x.c.agent.checks())[id];
  assert.deepEqual([check.ServiceID, check.Type], [sid, "script"]);
  await x.c.agent.check.register({
    name: "http",
    id: id + "h",
    serviceid: sid,
    http: "http://127.0.0.1:1/",
    interval: "10s",
    timeout: "1s",
  });
  assert.equal((await x.c.agent.checks())[id + "h"].Type, "http");
});

step("agent_check_deregister", async (x) => {
  const id = uid("cd");
  await x.c.agent.check.register({ name: "tmp", id, ttl: "10s" });
  await x.c.agent.check.deregister({ id });
  assert.equal((await x.c.agent.checks())[id], undefined);
});

for (const [verb, status] of [
  ["pass", "passing"],
  ["warn", "warning"],
  ["fail", "critical"],
]) {
  step(`agent_check_${verb}`, async (x) => {
    const id = uid("ttl");
    await x.c.agent.check.register({ name: "ttl", id, ttl: "30s" });
    await x.c.agent.check[verb]({ id, note: `note ${verb}` });
    const check = (await x.c.agent.checks())[id];
    assert.deepEqual([check.Status, check.Output], [status, `note ${verb}`]);
    await x.c.agent.check.deregister(id);
  });
}

step("agent_service_list", async (x) => {
  const id = uid("sl");
  await x.c.agent.service.register({ name: "listed", id, meta: { v: "1" } });
  assert.deepEqual((await x.c.agent.service.list())[id].Meta, { v: "1" });
});

step("agent_service_register", async (x) => {
  const id = uid("reg");
  await x.c.agent.service.register({
    name: "api",
    id,
    address: "10.1.1.1",
    port: 8080,
    tags: ["v2"],
    meta: { team: "x" },
    checks: [{ ttl: "10s" }, { tcp: "127.0.0.1:1", interval: "10s" }],
  });
  const svc = (await x.c.agent.services())[id];
  assert.deepEqual([svc.Address, svc.Port, svc.Meta], ["10.1.1.1", 8080, { team: "x" }]);
  const checks = await x.c.agent.checks();
  assert.ok(checks[`service:${id}:1`] && checks[`service:${id}:2`]);
});

step("agent_service_register_connect", async (x) => {
  const id = uid("mesh");
  await x.c.agent.service.register({ name: "mesh", id, port: 9000, connect: { sidecarservice: {} } });
  const services = await x.c.agent.services();
  assert.equal(services[`${id}-sidecar-proxy`].Kind, "connect-proxy");
});

step("agent_service_deregister", async (x) => {
  const id = uid("dereg");
  await x.c.agent.service.register({ name: "gone", id });
  await x.c.agent.service.deregister({ id });
  assert.equal((await x.c.agent.services())[id], undefined);
});

step("agent_service_maintenance", async (x) => {
  const id = uid("maint");
  await x.c.agent.service.register({ name: "m", id });
  await x.c.agent.service.maintenance({ id, enable: true, reason: "deploy" });
  assert.equal((await x.c.agent.checks())[`_service_maintenance:${id}`].Notes, "deploy");
  await x.c.agent.service.maintenance({ id, enable: false });
  assert.equal((await x.c.agent.checks())[`_service_maintenance:${id}`], undefined);
});

// ---------------------------------------------------------------- Catalog

step("catalog_datacenters", async (x) => {
  assert.deepEqual(await x.c.catalog.datacenters(), ["dc1"]);
});

step("catalog_register", async (x) => {
  const node = uid("ext");
  await x.c.catalog.register({
    node,
    address: "10.2.0.1",
    nodemeta: { rack: "r1" },
    service: { service: "ext", id: "ext1", port: 81 },
    check: { name: "alive", checkid: "alive", status: "passing", serviceid: "ext1" },
  });
  const info = await x.c.catalog.node.services(node);
  assert.deepEqual([info.Node.Address, info.Node.Meta.rack], ["10.2.0.1", "r1"]);
  assert.equal(info.Services.ext1.Port, 81);
});

step("catalog_deregister", async (x) => {
  const node = uid("gone");
  await x.c.catalog.register({ node, address: "10.2.0.2", service: { service: "s", id: "s1" } });
  await x.c.catalog.deregister({ node, serviceid: "s1" });
  assert.deepEqual((await x.c.catalog.node.services(node)).Services, {});
  await x.c.catalog.deregister({ node });
  assert.equal(await x.c.catalog.node.services(node), undefined); // Consul's null body
});

step("catalog_nodes", async (x) => {
  assert.ok((await x.c.catalog.nodes()).some((n) => n.Node === x.node));
});

step("catalog_services", async (x) => {
  assert.deepEqual((await x.c.catalog.services()).consul, []);
});

step("catalog_node_list", async (x) => {
  const nodes = await x.c.catalog.node.list({ filter: `Node == "${x.node}"` });
  assert.deepEqual(
    nodes.map((n) => n.Node),
    [x.node],
  );
});

step("catalog_node_services", async (x) => {
  const info = await x.c.catalog.node.services({ node: x.node });
  assert.equal(info.Node.Node, x.node);
  assert.ok(info.Services.consul);
});

step("catalog_service_list", async (x) => {
  assert.deepEqual((await x.c.catalog.service.list()).consul, []);
});

step("catalog_service_nodes", async (x) => {
  const id = uid("cs");
  await x.c.agent.service.register({ name: "catsvc3", id, port: 99, tags: ["blue"] });
  const nodes = await poll(async () => {
    const got = await x.c.catalog.service.nodes("catsvc3");
    return got.length && got;
  }, "sync");
  assert.deepEqual([nodes[0].ServiceID, nodes[0].ServicePort], [id, 99]);
  assert.equal((await x.c.catalog.service.nodes({ service: "catsvc3", tag: "blue" })).length, 1);
  assert.deepEqual(await x.c.catalog.service.nodes({ service: "catsvc3", tag: "green" }), []);
});

step("catalog_connect_nodes", async (x) => {
  assert.deepEqual(await x.c.catalog.connect.nodes("no-such-service"), []);
});

// ---------------------------------------------------------------- Event

step("event_fire", async (x) => {
  const name = uid("ev");
  const event = await x.c.event.fire(name, "payload");
  assert.equal(event.Name, name);
  assert.equal(event.Payload, "payload");
  assert.equal(event.ID.length, 36);
});

step("event_list", async (x) => {
  const name = uid("evl");
  await x.c.event.fire({ name, payload: "body" });
  const events = await x.c.event.list({ name });
  assert.deepEqual(
    events.map((e) => [e.Name, e.Payload]),
    [[name, "body"]],
  );
});

// ---------------------------------------------------------------- Health

step("health_node", async (x) => {
  const checks = await x.c.health.node(x.node);
  const serf = checks.find((c) => c.CheckID === "serfHealth");
  assert.deepEqual([serf.Status, serf.Node], ["passing", x.node]);
});

step("health_checks", async (x) => {
  const id = uid("hc");
  await x.c.agent.service.register({ name: "hcsvc3", id, check: { ttl: "30s" } });
  const checks = await poll(async () => {
    const got = await x.c.health.checks("hcsvc3");
    return got.length && got;
  }, "sync");
  assert.deepEqual([checks[0].CheckID, checks[0].Status], [`service:${id}`, "critical"]);
});

step("health_service", async (x) => {
  const id = uid("hs");
  await x.c.agent.service.register({ name: "hsvc3", id, check: { ttl: "30s" } });
  const entries = await poll(async () => {
    const got = await x.c.health.service("hsvc3");
    return got.length && got;
  }, "sync");
  assert.equal(entries[0].Service.ID, id);
  assert.deepEqual(await x.c.health.service({ service: "hsvc3", passing: true }), []);
  await x.c.agent.check.pass(`service:${id}`);
  await poll(async () => (await x.c.health.service({ service: "hsvc3", passing: true })).length, "passing");
});

step("health_state", async (x) => {
  const passing = await x.c.health.state("passing");
  assert.ok(passing.some((c) => c.CheckID === "serfHealth"));
  assert.ok((await x.c.health.state("any")).length >= passing.length);
});

// ---------------------------------------------------------------- KV

step("kv_get", async (x) => {
  const k = uid("kv");
  await x.c.kv.set(`${k}/a`, "1");
  await x.c.kv.set(`${k}/b/c`, "2");
  assert.equal((await x.c.kv.get(`${k}/a`)).Value, "1");
  const all = await x.c.kv.get({ key: k, recurse: true });
  assert.deepEqual(
    all.map((p) => p.Key),
    [`${k}/a`, `${k}/b/c`],
  );
  assert.equal(await x.c.kv.get(uid("none")), undefined);
  assert.equal((await x.c.kv.get({ key: `${k}/a`, raw: true })).toString(), "1");
});

step("kv_keys", async (x) => {
  const k = uid("keys");
  await x.c.kv.set(`${k}/a`, "1");
  await x.c.kv.set(`${k}/b/c`, "2");
  assert.deepEqual(await x.c.kv.keys({ key: `${k}/`, separator: "/" }), [`${k}/a`, `${k}/b/`]);
});

step("kv_set", async (x) => {
  const k = uid("set");
  assert.equal(await x.c.kv.set({ key: k, value: "v", flags: 42 }), true);
  const pair = await x.c.kv.get(k);
  assert.equal(pair.Flags, 42);
  // Consul answers a bare false; papi resolves a false body as undefined.
  assert.equal(await x.c.kv.set({ key: k, value: "lost", cas: pair.ModifyIndex + 1000 }), undefined);
  assert.equal((await x.c.kv.get(k)).Value, "v");
  assert.equal(await x.c.kv.set({ key: k, value: "won", cas: pair.ModifyIndex }), true);
  const session = (await x.c.session.create({ ttl: "30s" })).ID;
  assert.equal(await x.c.kv.set({ key: `${k}/lock`, value: "held", acquire: session }), true);
  assert.equal((await x.c.kv.get(`${k}/lock`)).Session, session);
  assert.equal(await x.c.kv.set({ key: `${k}/lock`, value: "free", release: session }), true);
});

step("kv_del", async (x) => {
  const k = uid("del");
  await x.c.kv.set(`${k}/x`, "1");
  await x.c.kv.set(`${k}/y`, "2");
  const pair = await x.c.kv.get(`${k}/x`);
  // Consul answers a bare false; papi resolves a false body as undefined.
  assert.equal(await x.c.kv.del({ key: `${k}/x`, cas: pair.ModifyIndex + 1000 }), undefined);
  assert.equal((await x.c.kv.get(`${k}/x`)).Value, "1");
  assert.equal(await x.c.kv.del({ key: `${k}/x`, cas: pair.ModifyIndex }), true);
  await x.c.kv.delete({ key: k, recurse: true });
  assert.equal(await x.c.kv.get({ key: k, recurse: true }), undefined);
});

// ---------------------------------------------------------------- Query

async function query(x, service, name) {
  return (await x.c.query.create({ name, service: { service } })).ID;
}

step("query_list", async (x) => {
  const id = await query(x, "web", uid("ql"));
  assert.ok((await x.c.query.list()).some((q) => q.ID === id));
});

step("query_create", async (x) => {
  const created = await x.c.query.create({
    name: uid("qc"),
    service: { service: "web", onlypassing: true, tags: ["x"] },
  });
  assert.deepEqual(Object.keys(created), ["ID"]);
});

step("query_get", async (x) => {
  const name = uid("qg");
  const id = await query(x, "web", name);
  const got = await x.c.query.get(id);
  assert.deepEqual([got.Name, got.Service.Service], [name, "web"]);
});

step("query_update", async (x) => {
  const name = uid("qu");
  const id = await query(x, "web", name);
  await x.c.query.update({ query: id, name, service: { service: "api" } });
  assert.equal((await x.c.query.get(id)).Service.Service, "api");
});

step("query_destroy", async (x) => {
  const id = await query(x, "web", uid("qd"));
  await x.c.query.destroy(id);
  await rejects(x.c.query.get(id), 404);
});

step("query_execute", async (x) => {
  const svc = uid("qe");
  await x.c.agent.service.register({ name: svc, id: svc, port: 7 });
  const id = await query(x, svc, svc);
  const result = await poll(async () => {
    const got = await x.c.query.execute(id);
    return got.Nodes.length && got;
  }, "sync");
  assert.deepEqual([result.Service, result.Nodes[0].Service.Port], [svc, 7]);
});

step("query_explain", async (x) => {
  const name = uid("qx");
  const id = await query(x, "web", name);
  // The library takes the first item of a list (bodyItem), and Consul answers
  // an object: it resolves undefined against Consul too. A 404 would reject.
  assert.equal(await x.c.query.explain(name), undefined);
  assert.equal(await x.c.query.explain(id), undefined);
  await rejects(x.c.query.explain("no-such-query"), 404);
});

// ---------------------------------------------------------------- Session

step("session_create", async (x) => {
  const { ID } = await x.c.session.create({ name: "s", ttl: "20s", behavior: "delete", lockdelay: "5s" });
  const info = await x.c.session.info(ID);
  assert.deepEqual([info.Name, info.Behavior, info.TTL, info.Node], ["s", "delete", "20s", x.node]);
});

step("session_destroy", async (x) => {
  const { ID } = await x.c.session.create();
  await x.c.session.destroy(ID);
  assert.equal(await x.c.session.info(ID), undefined);
});

step("session_info", async (x) => {
  const { ID } = await x.c.session.create({ name: "info" });
  assert.equal((await x.c.session.info({ id: ID })).ID, ID);
  assert.equal((await x.c.session.get(ID)).Name, "info");
});

step("session_node", async (x) => {
  const { ID } = await x.c.session.create();
  assert.ok((await x.c.session.node(x.node)).some((s) => s.ID === ID));
});

step("session_list", async (x) => {
  const { ID } = await x.c.session.create({ name: "listed" });
  assert.ok((await x.c.session.list()).some((s) => s.ID === ID));
});

step("session_renew", async (x) => {
  const { ID } = await x.c.session.create({ ttl: "15s" });
  const [renewed] = await x.c.session.renew(ID);
  assert.deepEqual([renewed.ID, renewed.TTL], [ID, "15s"]);
});

// ---------------------------------------------------------------- Status, Transaction

step("status_leader", async (x) => {
  assert.match(await x.c.status.leader(), /:\d+$/);
});

step("status_peers", async (x) => {
  assert.deepEqual(await x.c.status.peers(), [await x.c.status.leader()]);
});

step("transaction_create", async (x) => {
  const k = uid("txn");
  const value = Buffer.from("tv").toString("base64");
  const answer = await x.c.transaction.create([
    { KV: { Verb: "set", Key: k, Value: value } },
    { KV: { Verb: "get", Key: k } },
  ]);
  assert.equal(answer.Errors, null);
  assert.equal(Buffer.from(answer.Results[1].KV.Value, "base64").toString(), "tv");
});

// ---------------------------------------------------------------- Watch

step("watch", async (x) => {
  const k = uid("watch");
  const watch = x.c.watch({ method: x.c.kv.get, options: { key: k } });
  try {
    const seen = [];
    watch.on("change", (data) => seen.push(data && data.Value));
    watch.on("error", (err) => seen.push(`error: ${err}`));
    await poll(() => seen.length >= 1, "the first answer");
    await x.c.kv.set(k, "changed");
    await poll(() => seen.includes("changed"), "the change");
    assert.ok(!seen.some((v) => String(v).startsWith("error")), String(seen));
  } finally {
    watch.end();
  }
});

// ---------------------------------------------------------------- ACL (the ACL agent)

step("acl_bootstrap", async (x) => {
  await rejects(x.acl.acl.bootstrap(), 403, /forbidden|ACL bootstrap no longer allowed/);
});

step("acl_replication", async (x) => {
  const status = await x.acl.acl.replication();
  assert.deepEqual([status.Enabled, status.Running], [false, false]);
});

step("acl_denied_without_token", async (x) => {
  await rejects(x.anon.kv.set("secret", "x"), 403);
});

// The legacy ACL API (/v1/acl/create, info, list, ...) left Consul in 1.11: a
// 1.11+ agent answers 404, and so does ours.
for (const [name, call] of [
  ["acl_legacy_create", (x) => x.acl.acl.legacy.create({ name: "legacy" })],
  ["acl_legacy_update", (x) => x.acl.acl.legacy.update({ id: "anonymous", name: "legacy" })],
  ["acl_legacy_destroy", (x) => x.acl.acl.legacy.destroy("anonymous")],
  ["acl_legacy_info", (x) => x.acl.acl.legacy.info("anonymous")],
  ["acl_legacy_clone", (x) => x.acl.acl.legacy.clone("anonymous")],
  ["acl_legacy_list", (x) => x.acl.acl.legacy.list()],
]) {
  step(name, async (x) => {
    let answer;
    try {
      answer = await call(x);
    } catch (err) {
      assert.equal(err.statusCode, 404, String(err));
      return;
    }
    assert.equal(answer, undefined);
  });
}

// ---------------------------------------------------------------- main

async function main(argv) {
  if (argv[0] === "--list") {
    process.stdout.write(JSON.stringify(steps.map(([name]) => name)));
    return;
  }
  const [dev, aclAddr, mgmt] = argv;
  const client = (addr, token) => {
    const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), addr.slice(addr.lastIndexOf(":") + 1)];
    const opts = { host, port, defaults: { timeout: 10000 } };
    if (token) opts.defaults.token = token;
    return new Consul(opts);
  };
  const x = { c: client(dev), acl: client(aclAddr, mgmt), anon: client(aclAddr) };
  x.node = (await x.c.agent.self()).Config.NodeName;
  const results = {};
  for (const [name, fn] of steps) {
    try {
      await fn(x);
      results[name] = "ok";
    } catch (err) {
      results[name] = `${err.name}: ${err.message}`;
    }
  }
  process.stdout.write(JSON.stringify(results));
  for (const c of [x.c, x.acl, x.anon]) c.destroy();
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
