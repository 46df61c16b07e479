#!/usr/bin/env node
// Controller-channel benchmark (issue 3): how long from a revoke at the controller's API until
// the guest's next request is refused, and how long a 10,000-grant snapshot takes to apply.
// Real processes: `manila-gateway controller` and `manila-gateway serve`, with this script as
// both the operator (HTTP API) and the guest (NFS over TCP on 127.0.0.1).
//
//   npm run build && node bench/controller.mjs [--revokes 200] [--grants 10000]
//
// Prints one JSON line per figure and a table. Figures are from this machine at this moment:
// compare runs on the same machine, not against other machines.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { outputLines } from './lines.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'manila-gateway.cjs');
const { values } = parseArgs({ options: { revokes: { type: 'string', default: '200' }, grants: { type: 'string', default: '10000' } } });
const REVOKES = Number(values.revokes);
const MANY = Number(values.grants);
const NODE = 'bench';
const TOKEN = 'bench-token';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-bench-controller-'));
const exportsDir = path.join(dir, 'exports');
const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

// ---- processes -----------------------------------------------------------------------------

function start(args, ready) {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = spawn(process.execPath, [cli, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const lines = [];
  const waiters = [];
  child.stdout.on('data', outputLines((_line, record) => {
    if (!record) return;
    record.receivedAt = performance.now();
    lines.push(record);
    for (const w of [...waiters]) if (w.match(record)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(record); }
  }));
  const waitFor = (match, timeoutMs = 300_000) => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ match, resolve });
      setTimeout(() => reject(new Error(`timed out waiting in ${args[0]} output`)), timeoutMs).unref();
    });
  };
  return { child, lines, waitFor, ready: waitFor(ready), stop: (signal = 'SIGTERM') => new Promise((resolve) => { if (child.exitCode !== null) return resolve(); child.once('exit', resolve); child.kill(signal); }) };
}

async function startController(stateFile) {
  writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
  const c = start(['controller', '--listen', '127.0.0.1:0', '--state', stateFile, '--token-file', path.join(dir, 'token')], (r) => r.msg === 'controller listening');
  const rec = await c.ready;
  return { ...c, url: rec.url, gatewayUrl: rec.gatewayUrl };
}

async function startGateway(controllerUrl, stateDir) {
  const config = path.join(dir, 'gateway.yaml');
  writeFileSync(config, [
    `node_id: ${NODE}`,
    `state_dir: ${stateDir}`,
    'log_level: info',
    'listen: { tcp: [{ host: 127.0.0.1, port: 0 }] }',
    `backends: [{ id: local1, type: local, path: ${exportsDir} }]`,
    `controller: { url: "${controllerUrl}", token_file: ${path.join(dir, 'token')} }`,
  ].join('\n'));
  const g = start(['serve', '--config', config], (r) => r.msg === 'ready');
  const rec = await g.ready;
  return { ...g, port: rec.tcp[0] };
}

async function api(base, method, p, body) {
  const response = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  if (response.status >= 400) throw new Error(`${method} ${p}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

// ---- a minimal guest: MNT and GETATTR over one TCP connection ----------------------------------

class Guest {
  static connect(port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new Guest(socket)));
      socket.once('error', reject);
    });
  }
  constructor(socket) {
    this.socket = socket;
    this.xid = 1;
    this.waiting = new Map();
    this.buffer = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 4) {
        const length = this.buffer.readUInt32BE(0) & 0x7fffffff;
        if (this.buffer.length < 4 + length) return;
        const record = this.buffer.subarray(4, 4 + length);
        this.buffer = this.buffer.subarray(4 + length);
        const waiter = this.waiting.get(record.readUInt32BE(0));
        this.waiting.delete(record.readUInt32BE(0));
        // xid, REPLY, MSG_ACCEPTED, verifier (flavor, empty body), SUCCESS: results at byte 24
        waiter?.(record.subarray(24));
      }
    });
  }
  call(prog, proc, args) {
    const xid = this.xid++;
    const cred = Buffer.alloc(20);
    cred.writeUInt32BE(0, 0); // stamp
    cred.writeUInt32BE(0, 4); // machine name ""
    // uid 0, gid 0, no groups
    const header = Buffer.alloc(32);
    [xid, 0, 2, prog, 3, proc, 1, cred.length].forEach((v, i) => header.writeUInt32BE(v, i * 4));
    const verifier = Buffer.alloc(8);
    const message = Buffer.concat([header, cred, verifier, args]);
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE((0x80000000 | message.length) >>> 0);
    return new Promise((resolve) => {
      this.waiting.set(xid, resolve);
      this.socket.write(Buffer.concat([mark, message]));
    });
  }
  async mount(share) {
    const name = Buffer.from(`/${share}`);
    const args = Buffer.alloc(4 + ((name.length + 3) & ~3));
    args.writeUInt32BE(name.length, 0);
    name.copy(args, 4);
    const r = await this.call(100005, 1, args);
    if (r.readUInt32BE(0) !== 0) return undefined; // not granted (yet)
    const length = r.readUInt32BE(4);
    return Buffer.from(r.subarray(8, 8 + length));
  }
  async getattr(handle) {
    const args = Buffer.alloc(4 + ((handle.length + 3) & ~3));
    args.writeUInt32BE(handle.length, 0);
    handle.copy(args, 4);
    return (await this.call(100003, 1, args)).readUInt32BE(0);
  }
  close() {
    this.socket.destroy();
  }
}

// ---- figures -------------------------------------------------------------------------------

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const results = [];
function report(name, figure) {
  results.push({ name, ...figure });
  console.log(JSON.stringify({ bench: 'controller', name, ...figure }));
}

const grantFor = (share, extra = {}) => ({ id: `g-${share}`, node_id: NODE, share, backend: 'local1', path: share, guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none', ...extra });

/** Revoke -> first refused GETATTR, measured by a guest that keeps asking. */
async function revokeLatency(controller, gateway, label) {
  mkdirSync(path.join(exportsDir, 'target'), { recursive: true });
  const guest = await Guest.connect(gateway.port);
  // A second grant keeps the guest's connection open when the target is revoked.
  mkdirSync(path.join(exportsDir, 'keep'), { recursive: true });
  await api(controller.url, 'POST', '/v1/grants', grantFor('keep'));
  const samples = [];
  for (let i = 0; i < REVOKES; i++) {
    await api(controller.url, 'POST', '/v1/grants', grantFor('target'));
    let handle;
    while (!(handle = await guest.mount('target'))) await new Promise((r) => setTimeout(r, 1));
    if ((await guest.getattr(handle)) !== 0) throw new Error('granted share refused');
    const started = performance.now();
    const deleted = api(controller.url, 'DELETE', '/v1/grants/g-target');
    let status;
    do status = await guest.getattr(handle);
    while (status === 0);
    samples.push(performance.now() - started);
    if (status !== 13) throw new Error(`revoked share answered ${status}, not NFS3ERR_ACCES`);
    await deleted;
  }
  guest.close();
  await api(controller.url, 'DELETE', '/v1/grants/g-keep');
  samples.sort((a, b) => a - b);
  report(`revoke_to_enforced_${label}`, {
    revokes: samples.length,
    p50_ms: +quantile(samples, 0.5).toFixed(2),
    p99_ms: +quantile(samples, 0.99).toFixed(2),
    max_ms: +samples[samples.length - 1].toFixed(2),
  });
}

async function main() {
  const step = (what) => console.error(`[bench] ${what}`);
  mkdirSync(exportsDir, { recursive: true });
  const stateFile = path.join(dir, 'controller-state.json');

  // 1. Revoke latency with a near-empty node.
  step('revoke latency, few grants');
  let controller = await startController(stateFile);
  let gateway = await startGateway(controller.gatewayUrl, path.join(dir, 'gw-state'));
  await gateway.waitFor((r) => r.msg === 'controller change applied' && r.kind === 'snapshot');
  await revokeLatency(controller, gateway, 'few_grants');
  await gateway.stop();
  await controller.stop();

  // 2. A snapshot of MANY grants to a gateway that holds none (state written as the controller's
  //    own file: the benchmark is about the gateway, not about MANY durable API writes).
  step(`snapshot of ${MANY} grants`);
  for (let i = 0; i < MANY; i++) mkdirSync(path.join(exportsDir, 'many', `s${i}`), { recursive: true });
  const state = JSON.parse(readFileSync(stateFile, 'utf8'));
  for (let i = 0; i < MANY; i++) {
    state.grants.push({ id: `m${i}`, node_id: NODE, share: `m${i}`, backend: 'local1', path: `many/s${i}`, guest: { cid: 3 + (i % 1000) }, access: 'rw', squash: 'root', anon_uid: 65534, anon_gid: 65534 });
  }
  state.nodes[NODE] = { revision: (state.nodes[NODE]?.revision ?? 0) + 1 };
  writeFileSync(stateFile, JSON.stringify(state));
  controller = await startController(stateFile);
  gateway = await startGateway(controller.gatewayUrl, path.join(dir, 'gw-state-many'));
  const connected = await gateway.waitFor((r) => r.msg === 'controller connected');
  const applied = await gateway.waitFor((r) => r.msg === 'controller change applied' && r.kind === 'snapshot');
  report('snapshot_apply_new', { grants: applied.grants, failed: applied.failed, apply_ms: applied.ms, connected_to_applied_ms: Math.round(applied.receivedAt - connected.receivedAt) });

  // 3. The same snapshot again after a reconnect (nothing changes: the common case).
  await controller.stop('SIGKILL');
  controller = await startController(stateFile);
  // The gateway still points at the old port: restart it on its state (served from the store).
  await gateway.stop();
  const restarted = performance.now();
  gateway = await startGateway(controller.gatewayUrl, path.join(dir, 'gw-state-many'));
  const readyMs = Math.round(performance.now() - restarted);
  const stored = gateway.lines.find((r) => r.msg === 'stored controller grants served');
  report('restart_serving_stored', { grants: stored?.grants, process_start_to_ready_ms: readyMs });
  const again = await gateway.waitFor((r) => r.msg === 'controller change applied' && r.kind === 'snapshot');
  report('snapshot_apply_unchanged', { grants: again.grants, apply_ms: again.ms });

  step(`revoke latency, ${MANY} grants`);
  // 4. Revoke latency with MANY grants on the node (each change rewrites the grant store).
  await revokeLatency(controller, gateway, `${MANY}_grants`);
  await gateway.stop();
  await controller.stop();

  console.log('\n| figure | value |\n|---|---|');
  for (const r of results) {
    const { name, ...rest } = r;
    console.log(`| ${name} | ${Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(', ')} |`);
  }
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
