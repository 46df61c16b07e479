// The sockets part of the native addon: AF_VSOCK listening, the Acceptor (driven for real over an
// AF_UNIX listener: this machine has /dev/vsock but no vsock loopback, so nothing can connect to a
// vsock port here), socketPair, peerCid and sdNotify.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import v8 from 'node:v8';
import vm from 'node:vm';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { socketsBridge, VMADDR_CID_ANY, VMADDR_PORT_ANY, errnoName } from '../../src/native/sockets.js';
import { DgramReceiver } from '../helpers/unix-dgram.js';

const sb = socketsBridge();
const { EADDRINUSE, EAFNOSUPPORT, EBADF, EALREADY, ECONNREFUSED, EMFILE, ENAMETOOLONG, ENOENT, ENOTCONN } = os.constants.errno;
const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;
/** The open descriptor numbers (without the one readdir used for the listing itself). */
function openFds(): Set<number> {
  const open = new Set<number>();
  for (const name of fs.readdirSync('/proc/self/fd')) {
    try {
      fs.readlinkSync(`/proc/self/fd/${name}`);
      open.add(Number(name));
    } catch {
      // the listing's own descriptor, closed by now
    }
  }
  return open;
}
/** [soft, hard] RLIMIT_NOFILE of this process. */
function nofileLimits(): [number, number] {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))!;
  const [soft, hard] = line.slice('Max open files'.length).trim().split(/\s+/).map(Number);
  return [soft!, hard!];
}
/** The soft RLIMIT_NOFILE that leaves exactly `room` descriptor numbers free (it bounds numbers, not a count). */
function limitLeaving(room: number): number {
  const open = openFds();
  let free = 0;
  let n = 0;
  for (; free < room; n++) if (!open.has(n)) free++;
  return n;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-sockets-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A vsock port unlikely to be taken (ports above 1023 need no capability). */
const testPort = (): number => 20000 + Math.floor(Math.random() * 40000);

t.test('vsockListen: a given port, any port, and the same port twice', async (t) => {
  const before = fdCount();
  const port = testPort();
  const first = sb.vsockListen(VMADDR_CID_ANY, port, 16);
  t.equal(first.err, 0, 'bound and listening');
  t.ok(first.fd >= 0);
  t.equal(first.port, port, 'getsockname reports the port asked for');
  t.equal(first.cid, VMADDR_CID_ANY);

  const second = sb.vsockListen(VMADDR_CID_ANY, port, 16);
  t.equal(second.err, EADDRINUSE, 'a second bind to the same port');
  t.equal(second.syscall, 'bind');
  t.equal(second.fd, -1);
  t.equal(errnoName(second.err), 'EADDRINUSE');

  const any = sb.vsockListen(VMADDR_CID_ANY, VMADDR_PORT_ANY, 16);
  t.equal(any.err, 0);
  t.not(any.port, VMADDR_PORT_ANY, `VMADDR_PORT_ANY got a real port (${any.port})`);
  t.ok(any.port > 1023, 'an unprivileged one');

  fs.closeSync(first.fd);
  fs.closeSync(any.fd);
  const again = sb.vsockListen(VMADDR_CID_ANY, port, 16);
  t.equal(again.err, 0, 'the port is free again once the fd is closed');
  fs.closeSync(again.fd);
  t.equal(fdCount(), before, 'no descriptor leaked (failures included)');
});

t.test('peerCid and misuse', async (t) => {
  const l = sb.vsockListen(VMADDR_CID_ANY, VMADDR_PORT_ANY, 1);
  t.equal(sb.peerCid(l.fd).err, ENOTCONN, 'a listening vsock socket has no peer');
  fs.closeSync(l.fd);
  const pair = sb.socketPair();
  t.equal(pair.err, 0);
  t.equal(pair.fds.length, 2);
  t.same(sb.peerCid(pair.fds[0]), { cid: -1, port: -1, err: EAFNOSUPPORT }, 'an AF_UNIX socket has no CID');
  for (const fd of pair.fds) fs.closeSync(fd);
  t.equal(sb.peerCid(pair.fds[0]).err, EBADF);

  t.throws(() => sb.vsockListen(-1, 1, 1), TypeError);
  t.throws(() => (sb.vsockListen as unknown as (port: string) => unknown)('x'), TypeError);
  t.throws(() => (sb.sdNotify as unknown as (p: number) => unknown)(1), TypeError);
  t.throws(() => new sb.Acceptor(-1, () => undefined, () => undefined), TypeError);
  t.throws(() => new (sb.Acceptor as unknown as new (fd: number) => unknown)(0), TypeError);
});

t.test('Acceptor on a vsock listener: start, close releases the port, idempotent', async (t) => {
  const before = fdCount();
  const port = testPort();
  const l = sb.vsockListen(VMADDR_CID_ANY, port, 16);
  t.equal(l.err, 0);
  const acceptor = new sb.Acceptor(l.fd, () => t.fail('no connection expected'), (e) => t.fail(`accept error ${e}`));
  t.equal(acceptor.closed, false);
  t.equal(acceptor.start(), 0);
  t.equal(acceptor.start(), EALREADY, 'a second start');
  t.equal(sb.vsockListen(VMADDR_CID_ANY, port, 16).err, EADDRINUSE, 'listening');
  acceptor.close();
  t.equal(acceptor.closed, true);
  acceptor.close();
  t.equal(acceptor.start(), EBADF, 'start after close');
  const again = sb.vsockListen(VMADDR_CID_ANY, port, 16);
  t.equal(again.err, 0, 'close() released the port at once');
  fs.closeSync(again.fd);
  t.equal(fdCount(), before);
});

t.test('Acceptor and GC: a started one stays alive, a dropped one closes its fd', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const collect = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setImmediate(r)); // Node-API finalizers run from the event loop
    }
  };
  const portStarted = testPort();
  const portDropped = portStarted + 1;
  let started: InstanceType<typeof sb.Acceptor> | null = null;
  (() => {
    const a = sb.vsockListen(VMADDR_CID_ANY, portStarted, 4);
    started = new sb.Acceptor(a.fd, () => undefined, () => undefined);
    t.equal(started.start(), 0);
    const b = sb.vsockListen(VMADDR_CID_ANY, portDropped, 4);
    new sb.Acceptor(b.fd, () => undefined, () => undefined); // never started, never referenced
  })();
  const weak = new WeakRef(started!);
  started = null;
  await collect();
  t.equal(sb.vsockListen(VMADDR_CID_ANY, portStarted, 4).err, EADDRINUSE, 'the started acceptor still listens');
  const again = sb.vsockListen(VMADDR_CID_ANY, portDropped, 4);
  t.equal(again.err, 0, 'the collected one closed its listening fd');
  fs.closeSync(again.fd);
  const kept = weak.deref();
  t.ok(kept, 'not collected while started');
  kept?.close();
});

t.test('Acceptor in a worker thread that ends while it listens: closed with the worker', async (t) => {
  // The addon is unloaded with the worker's environment: the acceptor's uv handles must be closed
  // (their close callbacks are addon code) before that, or the worker's last loop turn crashes.
  const port = testPort();
  const addon = path.resolve('native-bridges/build/Release/manila_native.node');
  const worker = new Worker(
    `const n = require(${JSON.stringify(addon)});
     const l = n.vsockListen(0xffffffff, ${port}, 4);
     globalThis.acceptor = new n.Acceptor(l.fd, () => {}, () => {});
     require('node:worker_threads').parentPort.postMessage(globalThis.acceptor.start());`,
    { eval: true },
  );
  const [started] = (await once(worker, 'message')) as [number];
  t.equal(started, 0);
  t.equal(sb.vsockListen(VMADDR_CID_ANY, port, 4).err, EADDRINUSE, 'listening in the worker');
  await worker.terminate();
  const again = sb.vsockListen(VMADDR_CID_ANY, port, 4);
  t.equal(again.err, 0, "the worker's listening fd was closed with it");
  fs.closeSync(again.fd);
});

t.test('Acceptor over an AF_UNIX listener: every connection, with peer CID -1', async (t) => {
  const before = fdCount();
  const sockPath = path.join(dir, 'accept.sock');
  const l = sb.unixListen(sockPath, 1024);
  t.equal(l.err, 0);
  t.equal(sb.unixListen(sockPath, 16).err, EADDRINUSE, 'the path is taken');
  const accepted: { fd: number; cid: number; port: number }[] = [];
  const errors: number[] = [];
  const acceptor = new sb.Acceptor(
    l.fd,
    (fd, cid, port) => {
      accepted.push({ fd, cid, port });
      fs.writeSync(fd, `hello ${accepted.length}`);
      fs.closeSync(fd);
    },
    (e) => errors.push(e),
  );
  t.equal(acceptor.start(), 0);
  // More than one wakeup's worth (256) at once.
  const n = 400;
  const greetings = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<string>((resolve, reject) => {
          const c = net.connect({ path: sockPath });
          let text = '';
          c.on('data', (d: Buffer) => (text += d.toString()));
          c.on('close', () => resolve(text));
          c.on('error', reject);
        }),
    ),
  );
  t.equal(accepted.length, n, 'all accepted');
  t.equal(new Set(greetings).size, n, 'each served once');
  t.ok(accepted.every((a) => a.cid === -1 && a.port === -1), 'no CID for AF_UNIX');
  t.same(errors, []);
  acceptor.close();
  fs.unlinkSync(sockPath);
  t.equal(fdCount(), before, 'listening and accepted fds all closed');
});

t.test('Acceptor: a callback may close it; nextTick and promises run after each callback', async (t) => {
  const sockPath = path.join(dir, 'close-in-cb.sock');
  const l = sb.unixListen(sockPath, 16);
  let calls = 0;
  let ticked = false;
  const acceptor = new sb.Acceptor(
    l.fd,
    (fd) => {
      calls++;
      fs.closeSync(fd);
      acceptor.close();
      process.nextTick(() => (ticked = true));
    },
    () => undefined,
  );
  acceptor.start();
  const clients = [net.connect({ path: sockPath }), net.connect({ path: sockPath })];
  for (const c of clients) c.on('error', () => undefined);
  await sleep(200);
  t.equal(calls, 1, 'nothing accepted after close()');
  t.ok(ticked);
  t.ok(acceptor.closed);
  for (const c of clients) c.destroy();
  fs.unlinkSync(sockPath);
});

t.test('Acceptor: EMFILE is reported and accepting pauses instead of spinning', async (t) => {
  const sockPath = path.join(dir, 'emfile.sock');
  const l = sb.unixListen(sockPath, 64);
  const held: number[] = [];
  const errors: number[] = [];
  let accepted = 0;
  const acceptor = new sb.Acceptor(
    l.fd,
    (fd) => {
      accepted++;
      held.push(fd);
    },
    (e) => errors.push(e),
  );
  t.equal(acceptor.start(), 0);
  // A helper process does what this one cannot while its descriptor table is full: it connects six
  // clients and sets this process's RLIMIT_NOFILE, each when told (its pipes are opened first).
  const script = [
    'import resource, socket, sys',
    'clients = []',
    'for line in sys.stdin:',
    '    cmd = line.split()',
    '    if cmd[0] == "connect":',
    '        for _ in range(int(cmd[1])):',
    '            c = socket.socket(socket.AF_UNIX)',
    `            c.connect(${JSON.stringify(sockPath)})`,
    '            clients.append(c)',
    '    elif cmd[0] == "limit":',
    '        resource.prlimit(int(cmd[1]), resource.RLIMIT_NOFILE, (int(cmd[2]), int(cmd[3])))',
    '    print("done", flush=True)',
  ].join('\n');
  const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const replies: (() => void)[] = [];
  lines.on('line', () => replies.shift()?.());
  const command = (text: string): Promise<void> =>
    new Promise((resolve) => {
      replies.push(resolve);
      child.stdin.write(`${text}\n`);
    });
  const [soft0, hard] = nofileLimits();
  t.teardown(() => {
    child.kill();
    spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${soft0}:${hard}`], { stdio: 'ignore' });
  });
  // Room for exactly two more descriptors.
  await command(`limit ${process.pid} ${limitLeaving(2)} ${hard}`);
  await command('connect 6');
  await sleep(650);
  t.equal(accepted, 2, 'two accepted, then the table was full');
  t.ok(errors.length >= 1, `EMFILE reported (${errors.length} times in 650 ms)`);
  t.ok(errors.every((e) => e === EMFILE), 'as EMFILE');
  t.ok(errors.length <= 8, 'about once per 100 ms pause, not a busy loop');
  await command(`limit ${process.pid} ${soft0} ${hard}`);
  t.same(nofileLimits(), [soft0, hard], 'limit restored');
  const deadline = Date.now() + 3000;
  while (accepted < 6 && Date.now() < deadline) await sleep(20);
  t.equal(accepted, 6, 'the rest are accepted once descriptors are free again');
  for (const fd of held.splice(0)) fs.closeSync(fd);
  child.stdin.end();
  acceptor.close();
  fs.unlinkSync(sockPath);
});

t.test('unixListen: abstract names and bad paths', async (t) => {
  const name = `@mg-sockets-${process.pid}-${Date.now()}`;
  const l = sb.unixListen(name, 4);
  t.equal(l.err, 0);
  t.equal(sb.unixListen(name, 4).err, EADDRINUSE);
  fs.closeSync(l.fd);
  t.equal(sb.unixListen(path.join(dir, 'missing', 'x.sock'), 4).err, ENOENT);
  t.equal(sb.unixListen(`/${'x'.repeat(200)}`, 4).err, ENAMETOOLONG);
});

t.test('sdNotify: to a path and to an abstract socket', async (t) => {
  const sockPath = path.join(dir, 'notify.sock');
  const onPath = await DgramReceiver.start(sockPath);
  t.teardown(() => onPath.stop());
  t.equal(sb.sdNotify(sockPath, 'READY=1\nSTATUS=up'), 0);
  t.same(await onPath.waitFor(1), ['READY=1\nSTATUS=up']);

  const abstractName = `@mg-notify-${process.pid}-${Date.now()}`;
  const onAbstract = await DgramReceiver.start(abstractName);
  t.teardown(() => onAbstract.stop());
  t.equal(sb.sdNotify(abstractName, 'WATCHDOG=1'), 0);
  t.equal(sb.sdNotify(abstractName, 'STOPPING=1'), 0);
  t.same(await onAbstract.waitFor(2), ['WATCHDOG=1', 'STOPPING=1']);
  // The abstract address is exactly the name: a longer length would name another socket.
  t.equal(sb.sdNotify(`${abstractName}x`, 'X=1'), ECONNREFUSED, 'a different abstract name');
  t.same(onPath.messages, ['READY=1\nSTATUS=up'], 'nothing else arrived');
});

t.test('sdNotify: errors come back as errno', async (t) => {
  t.equal(sb.sdNotify(path.join(dir, 'nobody-here.sock'), 'READY=1'), ENOENT);
  t.equal(sb.sdNotify(`@mg-nobody-${process.pid}-${Date.now()}`, 'READY=1'), ECONNREFUSED);
  t.equal(sb.sdNotify('relative.sock', 'READY=1'), EAFNOSUPPORT, 'only absolute paths and @names');
  t.equal(sb.sdNotify('vsock:2:1234', 'READY=1'), EAFNOSUPPORT);
  t.equal(sb.sdNotify('', 'READY=1'), EAFNOSUPPORT);
  t.equal(sb.sdNotify(`/${'x'.repeat(120)}`, 'READY=1'), ENAMETOOLONG);
  const regular = path.join(dir, 'regular-file');
  fs.writeFileSync(regular, '');
  t.equal(sb.sdNotify(regular, 'READY=1'), ECONNREFUSED, 'not a socket');
});
