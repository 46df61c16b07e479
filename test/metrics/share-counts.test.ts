// The share layer's observer feeds the registry: the exposition must show exactly the operations
// and bytes this test performs, per share, procedure and NFS status. Runs as root against a real
// directory through the native bridge, as test/fs/service.test.ts does.
import t from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge } from '../../src/native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from '../../src/fs/handle.js';
import { ShareFileService, type ShareOpObserver } from '../../src/fs/service.js';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';
import type { Caller } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { Nfs3Status, StableHow } from '../../src/nfs3/types.js';
import { createMetrics } from '../../src/metrics/registry.js';
import { parseExposition, series, value } from './helpers/exposition.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-metrics-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const exportsDir = path.join(dir, 'exports');
mkdirSync(path.join(exportsDir, 'alpha'), { recursive: true });
mkdirSync(path.join(exportsDir, 'beta'), { recursive: true });
const data = Buffer.alloc(10_000);
for (let i = 0; i < data.length; i++) data[i] = i % 251;
writeFileSync(path.join(exportsDir, 'alpha', 'data.bin'), data);
writeFileSync(path.join(exportsDir, 'alpha', 'w.bin'), '');
writeFileSync(path.join(exportsDir, 'alpha', 'a.txt'), 'alpha\n');
writeFileSync(path.join(exportsDir, 'beta', 'b.txt'), 'beta data\n');

const grant = (over: Partial<Grant>): Grant => ({
  id: 'g-alpha', share: 'alpha', backend: 'local', path: 'alpha', guest: { tcp: '127.0.0.1' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'static', ...over,
});

const caller = (address: string): Caller => ({
  peer: { transport: 'tcp', address, port: 1000 },
  identity: `tcp:${address}`,
  flavor: AuthFlavor.AUTH_SYS,
  authSys: { stamp: 0, machineName: 'guest', uid: 0, gid: 0, gids: [] },
});
const B = (s: string) => Buffer.from(s);
const NO_TIME = { atime: { how: 'dont' as const }, mtime: { how: 'dont' as const } };

function setup(observer: ShareOpObserver) {
  const grants = new GrantTable();
  grants.upsert(grant({}));
  grants.upsert(grant({ id: 'g-alpha-ro', guest: { tcp: '10.0.0.3' }, access: 'ro' }));
  grants.upsert(grant({ id: 'g-beta', share: 'beta', path: 'beta', guest: { tcp: '10.0.0.2' } }));
  const service = new ShareFileService({
    native: fsBridge(),
    grants,
    backends: { rootOf: (id) => (id === 'local' ? exportsDir : undefined) },
    codec: new HandleCodec(loadHandleSecret(path.join(dir, 'state'))),
    logger: pino({ level: 'silent' }),
    observer,
  });
  const mountRoot = async (who: Caller, share: string): Promise<Buffer> => {
    const result = await service.mount(who, `/${share}`);
    if (result.status !== 0 || !result.handle) throw new Error(`mount ${share}: ${result.status}`);
    return result.handle;
  };
  return { grants, service, mountRoot };
}

t.test('counters equal exactly the operations and bytes performed', async (t) => {
  const metrics = createMetrics({ version: 'test' });
  const { grants, service, mountRoot } = setup(metrics.observer);
  t.teardown(() => service.close());
  const scrape = async () => parseExposition(await metrics.metrics());

  const root = caller('127.0.0.1');
  const rootFh = await mountRoot(root, 'alpha');
  t.same(series(await scrape(), 'manila_gateway_nfs_ops_total'), {}, 'MOUNT and its walk are not NFS requests');

  for (let i = 0; i < 3; i++) t.equal((await service.getattr(root, rootFh)).status, Nfs3Status.NFS3_OK);
  const file = await service.lookup(root, rootFh, B('data.bin'));
  const wfile = await service.lookup(root, rootFh, B('w.bin'));
  t.equal((await service.lookup(root, rootFh, B('missing'))).status, Nfs3Status.NFS3ERR_NOENT);

  const buffer = Buffer.alloc(8192);
  const first = await service.read(root, file.handle!, 0n, 4096, { buffer, offset: 0 });
  t.equal(first.count, 4096);
  const last = await service.read(root, file.handle!, 9500n, 1000, { buffer, offset: 0 });
  t.equal(last.count, 500, 'a short read at the end of the file');
  t.ok(last.eof);

  const written = await service.write(root, wfile.handle!, 0n, StableHow.FILE_SYNC, Buffer.alloc(4096, 0x61));
  t.equal(written.status, Nfs3Status.NFS3_OK);
  t.equal(written.count, 4096);
  t.equal(readFileSync(path.join(exportsDir, 'alpha', 'w.bin')).length, 4096);

  t.equal((await service.rename(root, rootFh, B('a.txt'), rootFh, B('a2.txt'))).status, Nfs3Status.NFS3_OK);
  const badRename = await service.rename(root, rootFh, B('a2.txt'), Buffer.alloc(64, 0xff), B('x'));
  t.equal(badRename.status, Nfs3Status.NFS3ERR_BADHANDLE, 'second handle forged');
  t.equal((await service.getattr(root, Buffer.alloc(64, 0xff))).status, Nfs3Status.NFS3ERR_BADHANDLE, 'names no share: not counted');

  // A guest whose grant is revoked while the share stays open for others.
  const temp = caller('10.0.0.9');
  grants.upsert(grant({ id: 'g-temp', guest: { tcp: '10.0.0.9' } }));
  const tempRoot = await mountRoot(temp, 'alpha');
  t.equal((await service.getattr(temp, tempRoot)).status, Nfs3Status.NFS3_OK);
  grants.revoke('g-temp');
  t.equal((await service.getattr(temp, tempRoot)).status, Nfs3Status.NFS3ERR_ACCES);

  // A read-only guest: the refused WRITE is counted, its bytes are not.
  const ro = caller('10.0.0.3');
  const roRoot = await mountRoot(ro, 'alpha');
  t.equal((await service.write(ro, roRoot, 0n, StableHow.FILE_SYNC, Buffer.alloc(100))).status, Nfs3Status.NFS3ERR_ROFS);

  // beta: its only grant revoked, the share retired; the handle still names beta.
  const betaGuest = caller('10.0.0.2');
  const betaRoot = await mountRoot(betaGuest, 'beta');
  t.equal((await service.getattr(betaGuest, betaRoot)).status, Nfs3Status.NFS3_OK);
  const b = await service.lookup(betaGuest, betaRoot, B('b.txt'));
  t.equal((await service.read(betaGuest, b.handle!, 0n, 100, { buffer, offset: 0 })).count, 10);
  grants.revoke('g-beta');
  t.equal(service.openShareCount, 1, 'beta retired');
  t.equal((await service.getattr(betaGuest, betaRoot)).status, Nfs3Status.NFS3ERR_ACCES);
  t.equal((await service.read(betaGuest, b.handle!, 0n, 100, { buffer, offset: 0 })).status, Nfs3Status.NFS3ERR_ACCES);

  const samples = await scrape();
  t.same(series(samples, 'manila_gateway_nfs_ops_total'), {
    'procedure=getattr,share=alpha,status=NFS3_OK': 4,
    'procedure=getattr,share=alpha,status=NFS3ERR_ACCES': 1,
    'procedure=lookup,share=alpha,status=NFS3_OK': 2,
    'procedure=lookup,share=alpha,status=NFS3ERR_NOENT': 1,
    'procedure=read,share=alpha,status=NFS3_OK': 2,
    'procedure=write,share=alpha,status=NFS3_OK': 1,
    'procedure=write,share=alpha,status=NFS3ERR_ROFS': 1,
    'procedure=rename,share=alpha,status=NFS3_OK': 1,
    'procedure=rename,share=alpha,status=NFS3ERR_BADHANDLE': 1,
    'procedure=getattr,share=beta,status=NFS3_OK': 1,
    'procedure=lookup,share=beta,status=NFS3_OK': 1,
    'procedure=read,share=beta,status=NFS3_OK': 1,
    'procedure=getattr,share=beta,status=NFS3ERR_ACCES': 1,
    'procedure=read,share=beta,status=NFS3ERR_ACCES': 1,
  });
  t.same(series(samples, 'manila_gateway_read_bytes_total'), { 'share=alpha': 4596, 'share=beta': 10 });
  t.same(series(samples, 'manila_gateway_written_bytes_total'), { 'share=alpha': 4096 });

  // The layer's own per-share count (status reports) is unchanged: successful resolves only.
  t.same(Object.fromEntries(service.shareOps()), { alpha: 13, beta: 3 });

  // forgetShare: beta's series go, alpha's stay and keep counting from where they were.
  metrics.forgetShare('beta');
  metrics.forgetShare('never-seen');
  const after = await scrape();
  t.same(Object.keys(series(after, 'manila_gateway_nfs_ops_total')).filter((k) => k.includes('share=beta')), []);
  t.same(series(after, 'manila_gateway_read_bytes_total'), { 'share=alpha': 4596 });
  await service.getattr(root, rootFh);
  await service.read(root, file.handle!, 0n, 100, { buffer, offset: 0 });
  const later = await scrape();
  t.equal(value(later, 'manila_gateway_nfs_ops_total', { share: 'alpha', procedure: 'getattr', status: 'NFS3_OK' }), 5);
  t.equal(value(later, 'manila_gateway_read_bytes_total', { share: 'alpha' }), 4696);
  // A request on the forgotten share's handle starts a new series from zero.
  await service.getattr(betaGuest, betaRoot);
  t.same(
    Object.entries(series(await scrape(), 'manila_gateway_nfs_ops_total')).filter(([k]) => k.includes('share=beta')),
    [['procedure=getattr,share=beta,status=NFS3ERR_ACCES', 1]],
  );
});

t.test('every NFS procedure reports under its own name, RENAME and LINK once', async (t) => {
  const ops: string[] = [];
  const observer: ShareOpObserver = {
    onOp: (share, procedure, status) => ops.push(`${share} ${procedure} ${Nfs3Status[status]}`),
    onRead: () => undefined,
    onWrite: () => undefined,
  };
  const { service, mountRoot } = setup(observer);
  t.teardown(() => service.close());
  const root = caller('127.0.0.1');
  const fh = await mountRoot(root, 'alpha');
  const cv = Buffer.alloc(8);
  await service.setattr(root, fh, NO_TIME, null);
  await service.access(root, fh, 0x3f);
  const made = await service.create(root, fh, B('made'), { mode: 0, attributes: NO_TIME });
  await service.mkdir(root, fh, B('dir'), NO_TIME);
  const link = await service.symlink(root, fh, B('sym'), NO_TIME, B('made'));
  await service.readlink(root, link.handle!);
  await service.mknod(root, fh, B('fifo'), { type: 7, attributes: NO_TIME });
  await service.link(root, made.handle!, fh, B('hard'));
  await service.readdir(root, fh, 0n, cv, 8192);
  await service.readdirplus(root, fh, 0n, cv, 8192, 65536);
  await service.fsstat(root, fh);
  await service.fsinfo(root, fh);
  await service.pathconf(root, fh);
  await service.commit(root, made.handle!, 0n, 0);
  await service.remove(root, fh, B('hard'));
  await service.rmdir(root, fh, B('dir'));
  t.same(ops, [
    'alpha setattr NFS3_OK',
    'alpha access NFS3_OK',
    'alpha create NFS3_OK',
    'alpha mkdir NFS3_OK',
    'alpha symlink NFS3_OK',
    'alpha readlink NFS3_OK',
    'alpha mknod NFS3_OK',
    'alpha link NFS3_OK',
    'alpha readdir NFS3_OK',
    'alpha readdirplus NFS3_OK',
    'alpha fsstat NFS3_OK',
    'alpha fsinfo NFS3_OK',
    'alpha pathconf NFS3_OK',
    'alpha commit NFS3_OK',
    'alpha remove NFS3_OK',
    'alpha rmdir NFS3_OK',
  ]);
});

t.test('an observer that throws does not change the answer', async (t) => {
  const boom = () => {
    throw new Error('observer bug');
  };
  const { service, mountRoot } = setup({ onOp: boom, onRead: boom, onWrite: boom });
  t.teardown(() => service.close());
  const root = caller('127.0.0.1');
  const fh = await mountRoot(root, 'alpha');
  t.equal((await service.getattr(root, fh)).status, Nfs3Status.NFS3_OK);
  const file = await service.lookup(root, fh, B('data.bin'));
  const read = await service.read(root, file.handle!, 0n, 10, { buffer: Buffer.alloc(10), offset: 0 });
  t.equal(read.status, Nfs3Status.NFS3_OK);
  t.equal(read.count, 10);
});
