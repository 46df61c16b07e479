// No input from a guest may crash the daemon: every procedure of every program gets truncated,
// random and bit-flipped arguments, and raw random bytes on the wire; the daemon must answer each
// call (or drop that one connection) and keep serving the share correctly afterwards.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/server.js';
import { Args, MOUNT_PROG, NFS_PROG, RpcClient, RpcError } from '../helpers/nfs-client.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-garbage-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(path.join(dir, 'exports', 'demo', 'sub'), { recursive: true });
writeFileSync(path.join(dir, 'exports', 'demo', 'f'), 'file contents\n');

const gateway = await startGateway(
  parseConfig(
    {
      node_id: 'garbage',
      state_dir: path.join(dir, 'state'),
      listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
      backends: [{ id: 'b', type: 'local', path: path.join(dir, 'exports') }],
      grants: [{ id: 'g', share: 'demo', backend: 'b', path: 'demo', guest: { tcp: '127.0.0.1' }, access: 'rw', squash: 'none' }],
    },
    'test',
  ),
  { logger: pino({ level: 'silent' }) },
);
t.teardown(() => gateway.stop());
const port = gateway.ports()[0]!;

// A deterministic generator, so a failure can be replayed.
let seed = 0x2545f491;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x1_0000_0000;
}
function randomBytes(length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(random() * 256);
  return b;
}

async function healthy(t: Test): Promise<void> {
  const c = await RpcClient.connect(port);
  try {
    const root = await c.mount('/demo');
    t.equal(root.status, 0, 'MNT still works');
    const file = await c.lookup(root.handle!, 'f');
    const attr = await c.getattr(file.handle!);
    t.equal(attr.attr?.size, 14n, 'GETATTR still right');
  } finally {
    c.close();
  }
}

t.test('random, truncated and bit-flipped arguments to every procedure', async (t) => {
  const c = await RpcClient.connect(port);
  t.teardown(() => c.close());
  const root = (await c.mount('/demo')).handle!;
  const file = (await c.lookup(root, 'f')).handle!;
  // a plausible argument prefix per procedure: a real handle, then a name or numbers
  const valid = (proc: number): Buffer => {
    const a = new Args().opaque(proc === 6 || proc === 7 || proc === 21 ? file : root);
    if ([3, 8, 9, 10, 11, 12, 13, 14, 15].includes(proc)) a.opaque('name-' + proc);
    return Buffer.concat([a.bytes(), randomBytes(64)]);
  };
  let answered = 0;
  let refused = 0;
  for (let proc = 0; proc <= 21; proc++) {
    for (let i = 0; i < 40; i++) {
      let args: Buffer;
      const base = valid(proc);
      if (i < 10) args = base.subarray(0, Math.floor(random() * base.length));
      else if (i < 20) args = randomBytes(Math.floor(random() * 300));
      else {
        args = Buffer.from(base);
        for (let k = 0; k < 3; k++) args[Math.floor(random() * args.length)]! ^= 1 << Math.floor(random() * 8);
      }
      try {
        await c.call(NFS_PROG, 3, proc, args);
        answered++;
      } catch (error) {
        if (!(error instanceof RpcError) || error.code !== 'RPC_NOT_SUCCESS') throw error;
        refused++;
      }
    }
  }
  for (let proc = 0; proc <= 5; proc++) {
    for (let i = 0; i < 20; i++) {
      try {
        await c.call(MOUNT_PROG, 3, proc, randomBytes(Math.floor(random() * 1100)));
        answered++;
      } catch (error) {
        if (!(error instanceof RpcError) || error.code !== 'RPC_NOT_SUCCESS') throw error;
        refused++;
      }
    }
  }
  t.ok(answered + refused === 22 * 40 + 6 * 20, `every call answered (${answered} with results, ${refused} GARBAGE_ARGS or similar)`);
  await healthy(t);
});

t.test('raw random bytes on fresh connections', async (t) => {
  for (let i = 0; i < 50; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        socket.end(randomBytes(1 + Math.floor(random() * 2000)));
      });
      socket.on('data', () => undefined);
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      setTimeout(() => socket.destroy(), 2000);
    });
  }
  await healthy(t);
});

t.test('every call header truncated at every byte still leaves the server up', async (t) => {
  const c = await RpcClient.connect(port);
  t.teardown(() => c.close());
  const cred = new Args().u32(0).opaque('host').u32(0).u32(0).u32(2).u32(1).u32(2).bytes();
  const header = new Args().u32(99).u32(0).u32(2).u32(NFS_PROG).u32(3).u32(1).u32(1).opaque(cred).u32(0).u32(0).bytes();
  for (let cut = 0; cut < header.length; cut++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        const mark = Buffer.alloc(4);
        mark.writeUInt32BE((0x80000000 | cut) >>> 0);
        socket.end(Buffer.concat([mark, header.subarray(0, cut)]));
      });
      socket.on('data', () => undefined);
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      setTimeout(() => socket.destroy(), 2000);
    });
  }
  t.pass(`${header.length} truncations sent`);
  await healthy(t);
});
