#!/usr/bin/env node
// KV Put then Get through an agent's gRPC API over TLS (ports.grpc_tls), from
// @grpc/grpc-js with the CA (and, optionally, a client certificate).
//
//   node tls_kv.js --addr 127.0.0.1:8503 --ca consul-agent-ca.pem [--cert c.pem --key k.pem]
//                  [--token SECRET]   (sent as x-consul-token metadata, ACLs on)
//
// Prints "tls kv ok <value>" and exits 0, or the error and exits 1.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const modules = path.resolve(__dirname, '..', '..', 'examples', 'node', 'node_modules');
const grpc = require(path.join(modules, '@grpc', 'grpc-js'));
const protoLoader = require(path.join(modules, '@grpc', 'proto-loader'));

const opts = { addr: '', ca: '', cert: '', key: '', key_name: 'node/tls', token: '' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) opts[argv[i].replace(/^--/, '').replace('-', '_')] = argv[i + 1];

const definition = protoLoader.loadSync(['consul/kv/v1/kv.proto'], {
  includeDirs: [path.resolve(__dirname, '..', '..', 'protos')],
  keepCase: true,
  longs: String,
  defaults: true,
});
const kv = grpc.loadPackageDefinition(definition).consul.kv.v1;
const creds = grpc.credentials.createSsl(
  fs.readFileSync(opts.ca),
  opts.key ? fs.readFileSync(opts.key) : null,
  opts.cert ? fs.readFileSync(opts.cert) : null,
);
const client = new kv.KVService(opts.addr, creds);
const deadline = () => new Date(Date.now() + 10000);
const metadata = new grpc.Metadata();
if (opts.token) metadata.set('x-consul-token', opts.token);

client.Put({ key: opts.key_name, value: Buffer.from('over-tls') }, metadata, { deadline: deadline() }, (err) => {
  if (err) { console.error(`put failed: ${err.code} ${err.details}`); process.exit(1); }
  client.Get({ key: opts.key_name }, metadata, { deadline: deadline() }, (err2, resp) => {
    if (err2) { console.error(`get failed: ${err2.code} ${err2.details}`); process.exit(1); }
    console.log(`tls kv ok ${Buffer.from(resp.pair.value).toString()}`);
    client.close();
  });
});
