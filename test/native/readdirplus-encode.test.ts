// The pieces of READDIRPLUS that native-bridges/src/readdir.cc encodes on its worker threads must be
// byte-identical to the TypeScript encoders they replace: NFS handles (HandleCodec.encode, with its
// HMAC tag) and fattr3 (encodeFattr3(toFattr3(...))).
import t from 'tap';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fsBridge, GFID_HANDLE_TYPE, type NativeStat } from '../../src/native/fsbridge.js';
import { HandleCodec, MAX_KERNEL_HANDLE } from '../../src/fs/handle.js';
import { toFattr3 } from '../../src/fs/attributes.js';
import { encodeFattr3 } from '../../src/nfs3/xdr.js';
import { XdrWriter } from '../../src/rpc/xdr.js';

const native = fsBridge();

function jsFattr3(stat: NativeStat, fsid: bigint): Buffer {
  const w = new XdrWriter(128);
  encodeFattr3(w, toFattr3(stat, fsid));
  return Buffer.from(w.result());
}

t.test('NFS handles: the same bytes and HMAC tag as HandleCodec.encode', async (t) => {
  let compared = 0;
  for (const secretLength of [32, 48, 64, 65, 200]) {
    const secret = randomBytes(secretLength);
    const codec = new HandleCodec(secret);
    for (let length = 0; length <= MAX_KERNEL_HANDLE + 2; length++) {
      for (const type of [1, 0x81, 0x10001, GFID_HANDLE_TYPE, 0x7fffffff, -1]) {
        const key = randomBytes(8);
        const bytes = randomBytes(length);
        const want = codec.encode(key, { type, bytes });
        const got = native.encodeNfsHandle(secret, key, type, bytes);
        if (want === null) {
          t.equal(got, null, `a ${length}-byte kernel handle gets no handle`);
        } else if (!got || !got.equals(want)) {
          t.fail(`secret ${secretLength} B, type ${type}, kernel ${length} B: ${got?.toString('hex')} != ${want.toString('hex')}`);
        }
        compared++;
        // and the codec accepts what native made
        if (got && !codec.decode(got)) t.fail(`the codec refuses ${got.toString('hex')}`);
      }
    }
  }
  t.ok(compared > 1000, `${compared} handles compared`);
});

const BASE: NativeStat = {
  dev: 2049, ino: 1234567, mode: 0o100644, nlink: 1, uid: 1000, gid: 100, rdevMajor: 0, rdevMinor: 0,
  size: 12345, blocks: 24, atimeSec: 1_700_000_000, atimeNsec: 123456789, mtimeSec: 1_700_000_001,
  mtimeNsec: 999_999_999, ctimeSec: 1_700_000_002, ctimeNsec: 0,
};

t.test('fattr3: the same 84 bytes as encodeFattr3(toFattr3()) for every type and edge value', async (t) => {
  const cases: Array<[string, Partial<NativeStat>]> = [
    ['regular', {}],
    ['setuid, sticky, all bits', { mode: 0o107777 }],
    ['directory', { mode: 0o40755, nlink: 7, size: 4096, blocks: 8 }],
    ['symlink', { mode: 0o120777, size: 11 }],
    ['fifo', { mode: 0o10600, size: 0, blocks: 0 }],
    ['char device', { mode: 0o20666, rdevMajor: 1, rdevMinor: 3 }],
    ['block device, big minor', { mode: 0o60660, rdevMajor: 259, rdevMinor: 1048575 }],
    ['socket', { mode: 0o140755 }],
    ['no type bits', { mode: 0o644 }],
    ['large file', { size: 2 ** 52 + 3, blocks: 2 ** 43 + 1 }],
    ['fileid beyond 2^32', { ino: 2 ** 40 + 17 }],
    ['fileid at 2^53', { ino: 2 ** 53 }],
    ['ids at the top', { uid: 0xfffffffe, gid: 0xffffffff, nlink: 0xffffffff }],
    ['before 1970', { atimeSec: -1, mtimeSec: -86400 * 365, ctimeSec: -(2 ** 31) }],
    ['after 2106', { atimeSec: 2 ** 32 + 5, mtimeSec: 2 ** 33 }],
  ];
  for (const fsid of [0n, 1n, 0x7fff_ffff_ffff_ffffn, 0x1234_5678_9abc_def0n]) {
    for (const [name, over] of cases) {
      const stat = { ...BASE, ...over };
      t.same(native.encodeFattr3(stat, fsid), jsFattr3(stat, fsid), `${name}, fsid ${fsid}`);
    }
  }
});

t.test('fattr3 of real objects: regular file, directory, symlink, fifo, socket, character device', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-fattr3-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'file'), 'x'.repeat(5000));
  mkdirSync(path.join(dir, 'dir'));
  symlinkSync('file', path.join(dir, 'link'));
  execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'sock'), resolve));
  t.teardown(() => server.close());
  const names = ['file', 'dir', 'link', 'fifo', 'sock'];
  if (process.getuid?.() === 0) {
    execFileSync('mknod', [path.join(dir, 'chr'), 'c', '1', '3']);
    names.push('chr');
  }
  for (const name of names) {
    const opened = await native.openPath(path.join(dir, name), 0);
    t.equal(opened.err, 0, `open ${name}`);
    try {
      const { stat } = await native.fstat(opened.fd);
      t.ok(stat, `stat ${name}`);
      t.same(native.encodeFattr3(stat!, 77n), jsFattr3(stat!, 77n), name);
    } finally {
      native.close(opened.fd);
    }
  }
});
