// The controller channel end to end: the reference controller as a real process, a gateway
// in-process (so it can be restarted on the same state_dir), guests as our RPC client and libnfs.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startGateway, type Gateway } from '../../src/server.js';
import { Args, NFS_PROG, RpcClient } from '../helpers/nfs-client.js';
import { nfsUrl, run } from '../helpers/daemon.js';
import { startControllerProcess, type ControllerProcess } from '../helpers/controller.js';
import { until } from '../helpers/wait.js';

const NFS3ERR_ACCES = 13;
const NFS3ERR_ROFS = 30;
const MNT3ERR_ACCES = 13;
const NODE = 'itest';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-controller-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exportsDir = path.join(dir, 'exports');
for (const share of ['alpha', 'beta', 'gamma']) mkdirSync(path.join(exportsDir, share), { recursive: true });
writeFileSync(path.join(exportsDir, 'alpha', 'file.txt'), 'alpha\n');
const tokenFile = path.join(dir, 'token');
writeFileSync(tokenFile, 'sekrit-token\n');
const stateFile = path.join(dir, 'controller-state.json');
const stateDir = path.join(dir, 'gateway-state');
const logger = pino({ level: 'silent' });

const grant = (share: string, over: Record<string, unknown> = {}) => ({
  id: `g-${share}`, node_id: NODE, share, backend: 'local1', path: share, guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none', ...over,
});

function gatewayConfig(controllerUrl: string, token = tokenFile) {
  return parseConfig(
    {
      node_id: NODE,
      state_dir: stateDir,
      listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
      backends: [{ id: 'local1', type: 'local', path: exportsDir }],
      controller: { url: controllerUrl, token_file: token },
    },
    'test',
  );
}

async function startController(port = 0): Promise<ControllerProcess> {
  const c = await startControllerProcess({ stateFile, tokenFile, token: 'sekrit-token', heartbeatMs: 300, port });
  t.teardown(() => c.stop('SIGKILL'));
  return c;
}

async function startGw(controllerUrl: string, token?: string): Promise<Gateway> {
  const g = await startGateway(gatewayConfig(controllerUrl, token), { logger, controllerBackoffMs: 100 });
  t.teardown(() => g.stop());
  return g;
}

/** The gateway's entry in GET /v1/gateways. */
async function gatewayInfo(c: ControllerProcess): Promise<any> {
  const r = await c.api('GET', '/v1/gateways');
  return r.body.gateways.find((g: any) => g.node_id === NODE);
}

/** Waits until the gateway acked the node's current revision at the controller. */
async function synced(c: ControllerProcess): Promise<any> {
  return until('the gateway to ack the current revision', async () => {
    const info = await gatewayInfo(c);
    return info && info.connected && info.last_acked_revision === info.revision ? info : undefined;
  });
}

async function client(port: number): Promise<RpcClient> {
  const c = await RpcClient.connect(port);
  t.teardown(() => c.close());
  return c;
}

function writeArgs(fh: Buffer, data: string): Buffer {
  return new Args().opaque(fh).u64(0n).u32(data.length).u32(2).opaque(data).bytes();
}

let controller: ControllerProcess;
let gateway: Gateway;

t.test('pushed grants are served; a revoke applies to the very next request', async (t) => {
  controller = await startController();
  t.equal((await controller.api('POST', '/v1/grants', grant('alpha'))).status, 201);
  t.equal((await controller.api('POST', '/v1/grants', grant('beta'))).status, 201);
  gateway = await startGw(controller.gatewayUrl);
  const info = await synced(controller);
  t.match(info.grants, { 'g-alpha': { state: 'applied' }, 'g-beta': { state: 'applied' } });

  const c = await client(gateway.ports()[0]!);
  t.same((await c.exports()).map((e) => e.dir), ['/alpha', '/beta'], 'EXPORT lists the pushed shares');
  const alpha = (await c.mount('/alpha')).handle!;
  const beta = (await c.mount('/beta')).handle!;
  const file = (await c.lookup(alpha, 'file.txt')).handle!;
  t.equal((await c.getattr(file)).status, 0);

  t.equal((await controller.api('DELETE', '/v1/grants/g-alpha')).status, 204);
  await synced(controller);
  t.equal((await c.getattr(file)).status, NFS3ERR_ACCES, 'the next request on the revoked share: NFS3ERR_ACCES');
  t.equal((await c.getattr(alpha)).status, NFS3ERR_ACCES, 'its root too');
  t.equal((await c.mount('/alpha')).status, MNT3ERR_ACCES, 'no new mount');
  t.same((await c.exports()).map((e) => e.dir), ['/beta'], 'EXPORT no longer lists it');
  t.equal((await c.getattr(beta)).status, 0, 'the other share goes on, on the same connection');

  // rw -> ro applies to the next write
  const written = await c.call(NFS_PROG, 3, 7, writeArgs(beta, 'x'));
  t.not(written.u32(), NFS3ERR_ROFS, 'a directory write is refused for its own reason while rw');
  t.equal((await controller.api('POST', '/v1/grants', grant('beta', { access: 'ro' }))).status, 200);
  await synced(controller);
  const created = await c.call(NFS_PROG, 3, 8, new Args().opaque(beta).opaque('new.txt').u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).bytes());
  t.equal(created.u32(), NFS3ERR_ROFS, 'after rw -> ro, CREATE gets NFS3ERR_ROFS');

  // Re-granting makes the old handles good again.
  t.equal((await controller.api('POST', '/v1/grants', grant('alpha'))).status, 201);
  await synced(controller);
  t.equal((await c.getattr(file)).status, 0, 're-granted: the old handle works');

  // A guest left without grants is disconnected.
  await controller.api('DELETE', '/v1/grants/g-alpha');
  await controller.api('DELETE', '/v1/grants/g-beta');
  await synced(controller);
  await t.rejects(c.getattr(beta), { code: 'RPC_CLOSED' }, 'the connection was closed');
});

t.test('libnfs sees grants come and go', async (t) => {
  const port = gateway.ports()[0]!;
  const ls = () => run('nfs-ls', [nfsUrl(port, 'gamma')], { timeoutMs: 30_000 });
  t.not((await ls()).code, 0, 'not granted: refused');
  await controller.api('POST', '/v1/grants', grant('gamma'));
  await synced(controller);
  const listed = await ls();
  t.equal(listed.code, 0, listed.stderr);
  await controller.api('DELETE', '/v1/grants/g-gamma');
  await synced(controller);
  t.not((await ls()).code, 0, 'revoked: refused');
});

t.test('a frozen controller is detected; a dead one never cuts guests off', async (t) => {
  await controller.api('POST', '/v1/grants', grant('alpha'));
  await synced(controller);
  const port = gateway.ports()[0]!;
  controller.child.kill('SIGSTOP');
  await until('the gateway to notice the frozen controller', () => gateway.controller!.state !== 'connected', 5000);
  t.pass('noticed within 5 s (heartbeat 300 ms x 3)');
  const listed = await run('nfs-ls', [nfsUrl(port, 'alpha')], { timeoutMs: 30_000 });
  t.equal(listed.code, 0, `grants keep working while the controller is frozen ${listed.stderr}`);
  await controller.stop('SIGKILL');
  const again = await run('nfs-ls', [nfsUrl(port, 'alpha')], { timeoutMs: 30_000 });
  t.equal(again.code, 0, 'and after it died');
});

t.test('restarted while the controller is down: stored grants served at once, then reconciled', async (t) => {
  const oldPort = controller.port;
  await gateway.stop();
  gateway = await startGw(`ws://127.0.0.1:${oldPort}/v1/gateway`);
  t.equal(gateway.controller!.state === 'connected', false, 'no controller to talk to');
  const port = gateway.ports()[0]!;
  const listed = await run('nfs-ls', [nfsUrl(port, 'alpha')], { timeoutMs: 30_000 });
  t.equal(listed.code, 0, `the stored grant is served without a controller ${listed.stderr}`);

  // While the gateway cannot reach it, the controller comes back and its grants change: alpha
  // goes, gamma comes. The gateway reconnects and reconciles with the snapshot.
  await gateway.stop();
  controller = await startController(oldPort);
  await controller.api('DELETE', '/v1/grants/g-alpha');
  await controller.api('POST', '/v1/grants', grant('gamma'));
  gateway = await startGw(controller.gatewayUrl);
  t.ok(gateway.grants.get('g-alpha'), 'at start the stored alpha grant is served (fail static)');
  await synced(controller);
  t.notOk(gateway.grants.get('g-alpha'), 'reconciled: alpha, missing from the snapshot, is revoked');
  t.ok(gateway.grants.get('g-gamma'), 'gamma is served');
  const c = await client(gateway.ports()[0]!);
  t.same((await c.exports()).map((e) => e.dir), ['/gamma']);
});

t.test('a wrong token is refused; the gateway keeps serving what it has', async (t) => {
  const wrong = path.join(dir, 'wrong-token');
  writeFileSync(wrong, 'not-the-token\n');
  await gateway.stop();
  gateway = await startGw(controller.gatewayUrl, wrong);
  await new Promise((resolve) => setTimeout(resolve, 800));
  t.not(gateway.controller!.state, 'connected');
  t.equal((await gatewayInfo(controller)).connected, false, 'the controller did not let it in');
  t.ok(gateway.grants.get('g-gamma'), 'stored grants still served');
  t.equal((await controller.api('GET', '/v1/grants', undefined, null)).status, 401, 'the API wants the token too');
  t.equal((await controller.api('GET', '/v1/grants', undefined, 'nope')).status, 401);
  // Putting the right token in place is enough: it is read again on the next attempt.
  writeFileSync(wrong, 'sekrit-token\n');
  await synced(controller);
  t.equal(gateway.controller!.state, 'connected');
});

t.test('a 10,000-grant snapshot', async (t) => {
  const many = 10_000;
  const sharesDir = path.join(exportsDir, 'many');
  for (let i = 0; i < many; i++) mkdirSync(path.join(sharesDir, `s${i}`), { recursive: true });
  await gateway.stop();
  await controller.stop();
  // Written as the controller's own state file: 10,000 POSTs would spend the test's time on the
  // controller's durable writes rather than on what is tested here, the gateway's snapshot.
  const state = JSON.parse((await import('node:fs')).readFileSync(stateFile, 'utf8'));
  for (let i = 0; i < many; i++) {
    state.grants.push({
      id: `m${i}`, node_id: NODE, share: `m${i}`, backend: 'local1', path: `many/s${i}`,
      guest: { cid: 3 + (i % 1000) }, access: 'rw', squash: 'root', anon_uid: 65534, anon_gid: 65534,
    });
  }
  state.nodes[NODE].revision += 1;
  writeFileSync(stateFile, JSON.stringify(state));
  controller = await startController();
  const started = Date.now();
  gateway = await startGw(controller.gatewayUrl);
  const info = await until('10,000 grants applied', async () => {
    const i = await gatewayInfo(controller);
    return i?.last_acked_revision === i?.revision ? i : undefined;
  }, 120_000);
  t.comment(`10,000-grant snapshot applied and acked ${Date.now() - started} ms after the gateway started`);
  t.equal(gateway.grants.size, many + 1, 'every grant is served');
  t.equal(Object.values(info.grants).filter((g: any) => g.state === 'applied').length, many + 1);
  const c = await client(gateway.ports()[0]!);
  t.same((await c.exports()).map((e) => e.dir), ['/gamma'], 'a guest sees only its own share among 10,001');
});
