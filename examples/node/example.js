#!/usr/bin/env node
// Register, discover, watch and KV against the local consul-grpc agent, from
// Node.js with @grpc/grpc-js and @grpc/proto-loader. The .proto files are
// loaded at run time from the repository's protos/ directory (or
// $CONSUL_GRPC_PROTOS); no code generation step.
//
//   npm ci && node example.js --addr 127.0.0.1:8502
//
// Steps (each prints one line; exit 0 when all pass, 1 on the first failure):
//  1. register: AgentService.RegisterService + RegisterCheck (a TTL check),
//     then UpdateTTL to passing.
//  2. discover: HealthService.ServiceHealth with passing_only, and
//     CatalogService.ListServiceInstances.
//  3. watch: a blocking ServiceHealth query (options.min_index = last index,
//     options.max_wait) wakes when the TTL is set to warning.
//  4. kv: Put, Get, a CAS Put that is refused (ABORTED) then one that is
//     applied, List, Delete.
//  5. deregister.
'use strict';

const path = require('node:path');
const os = require('node:os');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const RPC_TIMEOUT_MS = 10000; // the deadline of every non-blocking call

function parseArgs(argv) {
  const opts = {
    addr: process.env.CONSUL_GRPC_ADDR || '127.0.0.1:8502',
    protos: process.env.CONSUL_GRPC_PROTOS || path.resolve(__dirname, '..', '..', 'protos'),
    name: 'node-demo',
    timeout: 60,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (!['--addr', '--protos', '--name', '--timeout'].includes(flag) || value === undefined) {
      console.error(`usage: node example.js [--addr HOST:PORT] [--protos DIR] [--name NAME] [--timeout S]\nbad argument: ${flag}`);
      process.exit(64);
    }
    opts[flag.slice(2)] = flag === '--timeout' ? Number(value) : value;
    i++;
  }
  return opts;
}

function loadServices(protosDir) {
  const files = [
    'consul/agent/v1/agent.proto',
    'consul/catalog/v1/catalog.proto',
    'consul/health/v1/health.proto',
    'consul/kv/v1/kv.proto',
  ];
  const definition = protoLoader.loadSync(files, {
    includeDirs: [protosDir],
    keepCase: true, // field names as in the .proto files: min_index, passing_only
    longs: String, // uint64 indexes as decimal strings
    enums: String, // HEALTH_STATUS_PASSING
    defaults: true,
    oneofs: true,
  });
  const consul = grpc.loadPackageDefinition(definition).consul;
  return {
    AgentService: consul.agent.v1.AgentService,
    CatalogService: consul.catalog.v1.CatalogService,
    HealthService: consul.health.v1.HealthService,
    KVService: consul.kv.v1.KVService,
  };
}

// Promise wrapper for a unary call with a deadline.
function call(client, method, request, timeoutMs = RPC_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (err, resp) => {
      if (err) {
        const code = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code);
        reject(new Error(`${method}: ${code}: ${err.details}`));
      } else {
        resolve(resp);
      }
    });
  });
}

function duration(seconds) {
  return { seconds: String(Math.floor(seconds)), nanos: Math.round((seconds % 1) * 1e9) };
}

function aggregate(checks) {
  const order = ['HEALTH_STATUS_PASSING', 'HEALTH_STATUS_WARNING', 'HEALTH_STATUS_CRITICAL', 'HEALTH_STATUS_MAINTENANCE'];
  let worst = 0;
  for (const c of checks) worst = Math.max(worst, order.indexOf(c.status));
  return order[worst].replace('HEALTH_STATUS_', '').toLowerCase();
}

function assert(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const svc = loadServices(opts.protos);
  const creds = grpc.credentials.createInsecure();
  const agent = new svc.AgentService(opts.addr, creds);
  const catalog = new svc.CatalogService(opts.addr, creds);
  const health = new svc.HealthService(opts.addr, creds);
  const kv = new svc.KVService(opts.addr, creds);
  const id = `${opts.name}-${os.hostname()}-${process.pid}`;
  const checkId = `service:${id}`;
  const timer = setTimeout(() => {
    console.error(`timed out after ${opts.timeout}s`);
    process.exit(2);
  }, opts.timeout * 1000);
  let registered = false;
  try {
    // 1. register
    await call(agent, 'RegisterService', {
      definition: { service: { id, name: opts.name, port: 9090, tags: ['node', 'example'] } },
    });
    registered = true;
    await call(agent, 'RegisterCheck', {
      check: { check_id: checkId, name: `${opts.name} TTL`, service_id: id, definition: { ttl: duration(30) } },
    });
    await call(agent, 'UpdateTTL', { check_id: checkId, status: 'HEALTH_STATUS_PASSING', output: 'up' });
    console.log(`register ok: ${id} with ${checkId}`);

    // 2. discover (blocking until the passing instance reaches the catalog)
    let index = '0';
    let entries = [];
    for (;;) {
      const resp = await call(health, 'ServiceHealth', {
        service: opts.name,
        passing_only: true,
        options: { min_index: index, max_wait: duration(5) },
      }, 5000 * 1.1 + RPC_TIMEOUT_MS);
      index = resp.meta.index;
      entries = resp.entries.filter((e) => e.service.id === id);
      if (entries.length) break;
    }
    const instances = await call(catalog, 'ListServiceInstances', { service: opts.name });
    assert(instances.instances.some((i) => i.service.id === id), 'catalog lists the instance');
    const e = entries[0];
    console.log(`discover ok: ${e.service.id} on ${e.node.name} (${e.node.address}:${e.service.port}) ${aggregate(e.checks)} index=${index}`);

    // 3. watch: start a blocking query at the current index, then change the check.
    const watch = call(health, 'ServiceHealth', {
      service: opts.name,
      options: { min_index: index, max_wait: duration(20) },
    }, 20000 * 1.1 + RPC_TIMEOUT_MS);
    const started = Date.now();
    await call(agent, 'UpdateTTL', { check_id: checkId, status: 'HEALTH_STATUS_WARNING', output: 'degraded' });
    const changed = await watch;
    const mine = changed.entries.find((x) => x.service.id === id);
    assert(BigInt(changed.meta.index) > BigInt(index), 'the watch woke with a newer index');
    assert(mine && aggregate(mine.checks) === 'warning', 'the watch saw the warning');
    console.log(`watch ok: index ${index} -> ${changed.meta.index}, ${id} is ${aggregate(mine.checks)} after ${Date.now() - started} ms`);

    // 4. kv
    const key = `examples/node/${id}`;
    const put = await call(kv, 'Put', { key, value: Buffer.from('v1'), flags: '42' });
    assert(put.applied, 'put applied');
    const got = await call(kv, 'Get', { key });
    assert(got.pair && got.pair.value.toString() === 'v1' && got.pair.flags === '42', 'get returns v1');
    // A CAS conflict is the gRPC status ABORTED (Consul's HTTP API says `false`).
    const stale = await call(kv, 'Put', { key, value: Buffer.from('v2'), cas: '1' }).then(
      (r) => !r.applied,
      (err) => /ABORTED/.test(err.message),
    );
    assert(stale, 'a CAS put with a stale index is refused');
    const cas = await call(kv, 'Put', { key, value: Buffer.from('v2'), cas: got.pair.modify_index });
    assert(cas.applied, 'a CAS put with the current index is applied');
    const list = await call(kv, 'List', { prefix: 'examples/node/' });
    assert(list.pairs.some((p) => p.key === key && p.value.toString() === 'v2'), 'list shows v2');
    await call(kv, 'Delete', { key });
    const gone = await call(kv, 'Get', { key }).then(
      (r) => !r.pair,
      (err) => /NOT_FOUND/.test(err.message),
    );
    assert(gone, 'the key is deleted');
    console.log(`kv ok: ${key} put, get, cas, list, delete`);
  } finally {
    if (registered) {
      await call(agent, 'DeregisterService', { service_id: id }).then(
        () => console.log(`deregister ok: ${id}`),
        (err) => console.error(`deregister failed: ${err.message}`),
      );
    }
    clearTimeout(timer);
    for (const c of [agent, catalog, health, kv]) c.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`error: ${err.message}`);
    process.exit(1);
  },
);
