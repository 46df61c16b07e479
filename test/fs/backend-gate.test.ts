// The share layer's use of the backend layer: every request on a share passes its backend's gate
// (JUKEBOX past the bound, the slot held until the native call really returns), a backend that
// cannot be mounted is reported by code, and a GlusterFS-like backend cannot be shared whole.
import t from 'tap';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { fsBridge, type FsBridge } from '../../src/native/fsbridge.js';
import { HandleCodec, loadHandleSecret } from '../../src/fs/handle.js';
import { ShareFileService, MountStat, type BackendRoots } from '../../src/fs/service.js';
import { GrantTable } from '../../src/grants/table.js';
import type { Grant } from '../../src/grants/types.js';
import type { Caller } from '../../src/fs/types.js';
import { AuthFlavor } from '../../src/rpc/types.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import { BackendGate } from '../../src/backends/gate.js';
import { BackendError } from '../../src/backends/manager.js';
import { largeBuffers } from '../../src/rpc/buffers.js';

const real = fsBridge();
const dir = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'mg-gate-')));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(path.join(dir, 'b', 'share'), { recursive: true });
writeFileSync(path.join(dir, 'b', 'share', 'a'), 'a\n');
const codec = new HandleCodec(loadHandleSecret(path.join(dir, 'state')));
const grant = (over: Partial<Grant> & Pick<Grant, 'id' | 'share'>): Grant => ({
  backend: 'b', path: over.share, guest: { tcp: '127.0.0.1' },
  access: 'rw', squash: 'none', anonUid: 65534, anonGid: 65534, source: 'controller', ...over,
});
const guest: Caller = {
  peer: { transport: 'tcp', address: '127.0.0.1', port: 1000 },
  identity: 'tcp:127.0.0.1',
  flavor: AuthFlavor.AUTH_SYS,
  authSys: { stamp: 0, machineName: 'guest', uid: 0, gid: 0, gids: [] },
};

/** A share layer over `grants` with backend `b` at dir/b; `backends` overrides its parts. */
function serviceOver(grants: GrantTable, backends: Partial<BackendRoots> = {}, native: FsBridge = real): ShareFileService {
  return new ShareFileService({ native, grants, codec, logger: pino({ level: 'silent' }), backends: { rootOf: () => path.join(dir, 'b'), ...backends } });
}

/** rootOf for backend `b` that throws what `failure()` returns, while it returns something. */
const mountsUnless = (failure: () => Error | undefined) => async () => {
  const error = failure();
  if (error) throw error;
  return path.join(dir, 'b');
};

/**
 * A service behind one gate (one slot, `timeoutMs`) over share "share", with a handle of `a`; its
 * fstat and openByHandle wait while holding() is in force (until the returned release()).
 */
async function heldService(t: { teardown(fn: () => unknown): void }, timeoutMs: number) {
  let hold: Promise<void> | undefined;
  const native: FsBridge = {
    ...real,
    async openByHandle(...args: Parameters<FsBridge['openByHandle']>) {
      if (hold) await hold;
      return real.openByHandle(...args);
    },
    async fstat(fd) {
      if (hold) await hold;
      return real.fstat(fd);
    },
  };
  const gate = new BackendGate({ limit: 1, timeoutMs });
  const grants = new GrantTable();
  grants.upsert(grant({ id: 'g', share: 'share' }));
  const service = serviceOver(grants, { gateOf: () => gate }, native);
  t.teardown(() => service.close());
  const root = (await service.mount(guest, '/share')).handle!;
  const found = await service.lookup(guest, root, Buffer.from('a'));
  const holding = (): (() => void) => {
    let release!: () => void;
    hold = new Promise((resolve) => (release = resolve));
    return () => {
      hold = undefined;
      release();
    };
  };
  return { gate, service, root, found, holding };
}

t.test('requests pass the gate: JUKEBOX past the bound, the slot kept by the stuck call', async (t) => {
  const { gate, service, root, found, holding } = await heldService(t, 150);
  t.equal(found.status, Nfs3Status.NFS3_OK);

  const release = holding();
  const first = service.getattr(guest, found.handle!);
  const second = service.getattr(guest, root);
  t.equal((await first).status, Nfs3Status.NFS3ERR_JUKEBOX, 'the stuck call is answered JUKEBOX at the bound');
  t.equal((await second).status, Nfs3Status.NFS3ERR_JUKEBOX, 'the queued one too');
  t.equal(gate.inflight, 1, 'the stuck call keeps its slot');
  gate.suspended = true;
  t.equal((await service.getattr(guest, root)).status, Nfs3Status.NFS3ERR_JUKEBOX, 'suspended: refused at once');
  gate.suspended = false;
  release();
  await new Promise((r) => setTimeout(r, 20));
  t.equal(gate.inflight, 0, 'slot released when the call returned');
  t.equal((await service.getattr(guest, found.handle!)).status, Nfs3Status.NFS3_OK, 'answers again');
});

t.test('a request buffer stays pinned until its late work settles, not just until JUKEBOX', async (t) => {
  // The record a WRITE (or any large request) arrived in may be a pooled buffer; its handle, names
  // and data are views into it. Past the gate's deadline the work may still run: the buffer must
  // not go back to the pool (and to another guest's request) before it has.
  const { service, found, holding } = await heldService(t, 100);
  // the handle inside a pooled "record", as the record reader would hand it over
  while (largeBuffers.freeCount > 0) {
    largeBuffers.take(1);
    largeBuffers.take(1024 * 1024);
  }
  const record = largeBuffers.take(8192)!;
  found.handle!.copy(record, 100);
  const fh = record.subarray(100, 100 + found.handle!.length);

  const release = holding();
  t.equal((await service.getattr(guest, fh)).status, Nfs3Status.NFS3ERR_JUKEBOX, 'answered at the deadline');
  largeBuffers.give(record); // what the connection does once the call is answered
  t.equal(largeBuffers.freeCount, 0, 'not taken back while the late work may still read it');
  release();
  await new Promise((r) => setTimeout(r, 30));
  largeBuffers.give(record);
  t.equal(largeBuffers.freeCount, 1, 'taken back once the work settled');
});

t.test('a backend that cannot be mounted: MNT3ERR_IO, the error code for the grant; a retired root answers JUKEBOX', async (t) => {
  let failure: Error | undefined;
  const grants = new GrantTable();
  grants.upsert(grant({ id: 'g', share: 'share' }));
  const service = serviceOver(grants, { rootOf: mountsUnless(() => failure) });
  t.teardown(() => service.close());
  const root = (await service.mount(guest, '/share')).handle!;
  failure = new BackendError('BACKEND_UNAVAILABLE', 'backend b cannot be mounted: mount error(13)');
  service.retireBackend('b');
  t.equal((await service.getattr(guest, root)).status, Nfs3Status.NFS3ERR_JUKEBOX, 'an old handle waits for the backend (JUKEBOX)');
  t.equal((await service.mount(guest, '/share')).status, MountStat.MNT3ERR_IO);
  await t.rejects(service.openShare('share'), { code: 'BACKEND_UNAVAILABLE' });
  failure = undefined;
  t.equal((await service.getattr(guest, root)).status, Nfs3Status.NFS3_OK, 'served again once it mounts');
});

t.test('a backend that may not be shared whole', async (t) => {
  const grants = new GrantTable();
  grants.upsert(grant({ id: 'g', share: 'all', path: '.' }));
  const service = serviceOver(grants, { rootShareAllowed: () => false });
  t.teardown(() => service.close());
  await t.rejects(service.openShare('all'), { code: 'SHARE_AT_BACKEND_ROOT' });
  t.equal((await service.mount(guest, '/all')).status, MountStat.MNT3ERR_IO);
});

t.test('RENAME and LINK take one slot for both handles: no deadlock with max_inflight 1', async (t) => {
  const gate = new BackendGate({ limit: 1, timeoutMs: 2000 });
  const grants = new GrantTable();
  grants.upsert(grant({ id: 'g', share: 'share' }));
  const service = serviceOver(grants, { gateOf: () => gate });
  t.teardown(() => service.close());
  const root = (await service.mount(guest, '/share')).handle!;
  const file = (await service.lookup(guest, root, Buffer.from('a'))).handle!;
  const linked = await service.link(guest, file, root, Buffer.from('a-link'));
  t.equal(linked.status, Nfs3Status.NFS3_OK, 'LINK answers');
  const renamed = await service.rename(guest, root, Buffer.from('a-link'), root, Buffer.from('a-moved'));
  t.equal(renamed.status, Nfs3Status.NFS3_OK, 'RENAME answers');
  t.equal(gate.inflight, 0);
});

t.test('after a restart while the backend is down, old handles wait (JUKEBOX), they are not STALE', async (t) => {
  const grants = new GrantTable();
  grants.upsert(grant({ id: 'g', share: 'share' }));
  const before = serviceOver(grants);
  const root = (await before.mount(guest, '/share')).handle!;
  before.close();
  let down = true;
  const after = serviceOver(grants, { rootOf: mountsUnless(() => (down ? new BackendError('BACKEND_UNAVAILABLE', 'backend b cannot be mounted') : undefined)) });
  t.teardown(() => after.close());
  t.equal((await after.getattr(guest, root)).status, Nfs3Status.NFS3ERR_JUKEBOX, 'JUKEBOX while the backend cannot be mounted');
  down = false;
  t.equal((await after.getattr(guest, root)).status, Nfs3Status.NFS3_OK, 'served once it mounts');
});
