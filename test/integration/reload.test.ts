// Reload and shutdown of an in-process gateway: what a failed reload keeps, what a reload racing a
// shutdown may not do, and metrics of a revoked share.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/server.js';
import { RpcClient } from '../helpers/nfs-client.js';
import { parseExposition } from '../metrics/helpers/exposition.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-reload-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(path.join(dir, 'exports', 'gone'), { recursive: true });
mkdirSync(path.join(dir, 'exports', 'kept'), { recursive: true });
const logger = pino({ level: 'silent' });

const config = (tcp: Array<{ host: string; port: number }>, shares: string[]) =>
  parseConfig(
    {
      node_id: 'reload',
      state_dir: path.join(dir, 'state'),
      listen: { tcp },
      backends: [{ id: 'b', type: 'local', path: path.join(dir, 'exports') }],
      grants: shares.map((share) => ({ id: `g-${share}`, share, backend: 'b', path: share, guest: { tcp: '127.0.0.1' }, squash: 'none' })),
    },
    'test',
  );

function busyPort(t: { teardown(fn: () => unknown): void }): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
    t.teardown(() => server.close());
  });
}

t.test('a reload whose new port is taken keeps the old listener serving', async (t) => {
  const gateway = await startGateway(config([{ host: '127.0.0.1', port: 0 }], ['kept']), { logger });
  t.teardown(() => gateway.stop());
  const oldPort = gateway.ports()[0]!;
  const taken = await busyPort(t);
  const result = await gateway.reload(config([{ host: '127.0.0.1', port: taken }], ['kept']));
  t.same(result.failed, [`tcp 127.0.0.1:${taken}`]);
  t.same(result.closed, [], 'the old listener is not closed');
  const c = await RpcClient.connect(oldPort);
  t.teardown(() => c.close());
  t.equal((await c.mount('/kept')).status, 0, 'and still serves');
  const moved = await gateway.reload(config([{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.2', port: 0 }], ['kept']));
  t.same(moved.opened, ['tcp 127.0.0.2:0'], 'the failed entry is gone from the config, the new one opens');
  t.same(moved.closed, [], 'the old listener is wanted again: kept');
});

t.test('a reload racing a shutdown opens nothing after it', async (t) => {
  const gateway = await startGateway(config([{ host: '127.0.0.1', port: 0 }], ['kept']), { logger });
  const reloading = gateway.reload(config([{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.3', port: 0 }], ['kept']));
  const stopping = gateway.shutdown(0);
  const late = gateway.reload(config([{ host: '127.0.0.4', port: 0 }], ['kept']));
  await Promise.all([reloading, stopping, late]);
  t.same(gateway.listeners(), [], 'no listener outlives the shutdown');
  t.same(await late, { opened: [], closed: [], failed: [], restartOnly: [] }, 'a reload after the shutdown began does nothing');
});

t.test('a revoked share does not bring its metrics series back', async (t) => {
  const gateway = await startGateway(config([{ host: '127.0.0.1', port: 0 }], ['gone', 'kept']), { logger });
  t.teardown(() => gateway.stop());
  const c = await RpcClient.connect(gateway.ports()[0]!);
  t.teardown(() => c.close());
  const root = (await c.mount('/gone')).handle!;
  t.equal((await c.getattr(root)).status, 0);
  await gateway.reload(config([{ host: '127.0.0.1', port: 0 }], ['kept']));
  for (let i = 0; i < 5; i++) t.equal((await c.getattr(root)).status, 13);
  const samples = parseExposition(await gateway.metrics.metrics());
  t.same(samples.filter((s) => s.labels.share === 'gone'), [], 'no series for the revoked share');
  const unknown = samples.find((s) => s.name === 'manila_gateway_nfs_ops_total' && s.labels.share === 'unknown' && s.labels.status === 'NFS3ERR_ACCES');
  t.equal(unknown?.value, 5, 'its refusals are counted under share="unknown"');
});
