// libnfs's command-line client (Debian's libnfs-utils: nfs-ls, nfs-cp, nfs-cat) against the daemon.
// libnfs URLs: nfs://127.0.0.1/<share>[/<path>]?version=3&nfsport=P&mountport=P (see helpers/daemon.ts).
// libnfs mounts the URL's directory part as the export (nfs-ls: the whole path; nfs-cat and nfs-cp:
// all but the last component), so files are read and written at the top of the share here.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync, writeSync, closeSync, existsSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { startDaemon, nfsUrl, run, type Daemon } from '../helpers/daemon.js';
import { RpcClient } from '../helpers/nfs-client.js';

const T = { timeoutMs: 60_000 };

/** names listed by nfs-ls (`-rw-r--r--  1     0     0            3 name`; with -R a relative path) */
function lsNames(out: string): string[] {
  const names: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^\S{9,10}\s+\d+\s+\d+\s+\d+\s+\d+ (.*)$/.exec(line);
    if (m) names.push(m[1]!);
  }
  return names;
}

function lsLine(out: string, name: string): string | undefined {
  return out.split('\n').find((l) => lsNames(l)[0] === name);
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function daemon(t: Test, opts: Parameters<typeof startDaemon>[0]): Promise<Daemon> {
  const d = await startDaemon(opts);
  t.teardown(() => d.stop());
  return d;
}

t.test('nfs-ls lists the files of a share', async (t) => {
  const d = await daemon(t, { shares: [{ id: 'demo' }] });
  const root = path.join(d.exportsDir, 'demo');
  writeFileSync(path.join(root, 'hello.txt'), 'hello\n');
  writeFileSync(path.join(root, 'data.bin'), randomBytes(5000));
  mkdirSync(path.join(root, 'sub'));
  writeFileSync(path.join(root, 'sub', 'inner.txt'), 'inner\n');
  const r = await run('nfs-ls', [nfsUrl(d.port, 'demo')], T);
  t.equal(r.code, 0, 'nfs-ls exits 0', { stderr: r.stderr });
  t.same(lsNames(r.stdout).sort(), ['data.bin', 'hello.txt', 'sub'], 'the top of the share is listed', { stdout: r.stdout });
  t.match(lsLine(r.stdout, 'hello.txt'), /^-rw-r--r--\s+1\s+0\s+0\s+6 hello\.txt$/, 'mode, links, owner and size of hello.txt');
  t.match(lsLine(r.stdout, 'sub'), /^d/, 'sub is a directory');
  const c = await run('nfs-cat', [nfsUrl(d.port, 'demo', 'hello.txt')], T);
  t.equal(c.code, 0, 'nfs-cat exits 0', { stderr: c.stderr });
  t.equal(c.stdout, 'hello\n', 'nfs-cat reads the file');
});

t.test('nfs-cp of 64 MiB into the share and back', { timeout: 300_000 }, async (t) => {
  const d = await daemon(t, { shares: [{ id: 'demo' }] });
  const src = path.join(d.dir, 'src.bin');
  const back = path.join(d.dir, 'back.bin');
  const fd = openSync(src, 'w');
  for (let i = 0; i < 64; i++) writeSync(fd, randomBytes(1 << 20));
  closeSync(fd);
  const want = await sha256(src);
  const up = await run('nfs-cp', [src, nfsUrl(d.port, 'demo', 'big.bin')], { timeoutMs: 240_000 });
  t.equal(up.code, 0, 'nfs-cp into the share exits 0', { stdout: up.stdout, stderr: up.stderr });
  const onDisk = path.join(d.exportsDir, 'demo', 'big.bin');
  t.equal(existsSync(onDisk) && statSync(onDisk).size, 64 << 20, 'the file on disk has 64 MiB');
  t.equal(existsSync(onDisk) && (await sha256(onDisk)), want, 'sha256 of the file on disk');
  const down = await run('nfs-cp', [nfsUrl(d.port, 'demo', 'big.bin'), back], { timeoutMs: 240_000 });
  t.equal(down.code, 0, 'nfs-cp out of the share exits 0', { stdout: down.stdout, stderr: down.stderr });
  t.equal(existsSync(back) && (await sha256(back)), want, 'sha256 of the copy read back');
});

t.test('nfs-ls -R of a tree: nested dirs, 200 files', async (t) => {
  const d = await daemon(t, { shares: [{ id: 'demo' }] });
  const root = path.join(d.exportsDir, 'demo');
  const want: string[] = [];
  for (let a = 0; a < 4; a++) {
    for (let b = 0; b < 5; b++) {
      const dir = `tree/d${a}/e${b}`;
      mkdirSync(path.join(root, dir), { recursive: true });
      for (let c = 0; c < 10; c++) {
        writeFileSync(path.join(root, dir, `f${c}`), `${dir}/f${c}\n`);
        want.push(`${dir}/f${c}`);
      }
    }
  }
  mkdirSync(path.join(root, 'tree/deep/a/b/c/d'), { recursive: true });
  writeFileSync(path.join(root, 'tree/deep/a/b/c/d/leaf'), 'leaf\n');
  want.push('tree/deep/a/b/c/d/leaf');
  const r = await run('nfs-ls', ['-R', nfsUrl(d.port, 'demo')], T);
  t.equal(r.code, 0, 'nfs-ls -R exits 0', { stderr: r.stderr });
  const got = new Set(lsNames(r.stdout));
  const missing = want.filter((n) => !got.has(n));
  t.same(missing, [], `all ${want.length} files are listed`);
  t.ok(got.has('tree/d3/e4') && got.has('tree/deep/a/b/c/d'), 'the directories are listed');
  t.equal(got.size, want.length + 1 + 4 + 20 + 5, 'nothing else is listed (files, tree, d*, d*/e*, deep chain)');
});

t.test('a share not granted to this guest is refused and not exported to it', async (t) => {
  const d = await daemon(t, {
    shares: [{ id: 'demo' }, { id: 'secret', guest: { tcp: '10.9.9.9' } }],
  });
  writeFileSync(path.join(d.exportsDir, 'secret', 'classified.txt'), 'CLASSIFIED-CONTENT\n');
  const r = await run('nfs-ls', [nfsUrl(d.port, 'secret')], T);
  t.not(r.code, 0, 'nfs-ls of the share exits non-zero', { stdout: r.stdout, stderr: r.stderr });
  t.notMatch(r.stdout, /classified/, 'nothing of the share is listed');
  const c = await run('nfs-cat', [nfsUrl(d.port, 'secret', 'classified.txt')], T);
  t.not(c.code, 0, 'nfs-cat of a file in it exits non-zero');
  t.notMatch(c.stdout, /CLASSIFIED/, 'and shows nothing of it');
  // libnfs's nfs-ls -D asks the portmapper on port 111 only, so EXPORT is asked with our own client
  const client = await RpcClient.connect(d.port);
  const list = await client.exports().finally(() => client.close());
  const dirs = list.map((e) => e.dir);
  t.ok(dirs.includes('/demo'), 'MOUNT EXPORT lists /demo', { dirs });
  t.notOk(dirs.includes('/secret'), 'MOUNT EXPORT does not list /secret', { dirs });
  const ok = await run('nfs-ls', [nfsUrl(d.port, 'demo')], T);
  t.equal(ok.code, 0, 'the granted share still works', { stderr: ok.stderr });
});

t.test('no way out of the share: .., symlinks to /etc and above the share', async (t) => {
  const d = await daemon(t, { shares: [{ id: 'demo' }] });
  const root = path.join(d.exportsDir, 'demo');
  const sentinel = `outside-${randomBytes(4).toString('hex')}`;
  const sentinelContent = `SENTINEL-${randomBytes(8).toString('hex')}`;
  writeFileSync(path.join(d.exportsDir, sentinel), sentinelContent + '\n'); // on the backend, beside the share
  writeFileSync(path.join(root, 'hello.txt'), 'hello\n');
  symlinkSync('/etc', path.join(root, 'etclink'));
  symlinkSync('/etc/passwd', path.join(root, 'pwlink'));
  symlinkSync('../../../../../../../../../../etc', path.join(root, 'uplink'));
  symlinkSync(`../${sentinel}`, path.join(root, 'outlink'));
  const passwd = readFileSync('/etc/passwd', 'utf8');
  const passwdFirst = passwd.split('\n')[0]!; // root:x:0:0:...
  const etcNames = ['passwd', 'os-release', 'hostname', 'fstab'].filter((n) => existsSync(path.join('/etc', n)));
  const leaked = (s: string) =>
    s.includes(sentinel) || s.includes(sentinelContent) || s.includes(passwdFirst) || lsNames(s).some((n) => etcNames.includes(n));

  const ls = await run('nfs-ls', [nfsUrl(d.port, 'demo')], T);
  t.equal(ls.code, 0, 'nfs-ls of the share exits 0', { stderr: ls.stderr });
  for (const l of ['etclink', 'pwlink', 'uplink', 'outlink']) {
    t.match(lsLine(ls.stdout, l), /^l/, `${l} is listed as a symlink`, { stdout: ls.stdout });
  }
  t.notOk(leaked(ls.stdout), 'the listing shows nothing from outside');

  // each of these must fail or show something harmless, never what lies outside the share
  const tries: [string, string[]][] = [
    ['nfs-ls nfs://127.0.0.1/demo/..', ['nfs-ls', nfsUrl(d.port, 'demo/..')]],
    ['nfs-ls nfs://127.0.0.1/demo/../ (trailing slash)', ['nfs-ls', nfsUrl(d.port, 'demo/../')]],
    ['nfs-ls nfs://127.0.0.1/demo/etclink/../..', ['nfs-ls', nfsUrl(d.port, 'demo/etclink/../..')]],
    ['nfs-ls -R of the share', ['nfs-ls', '-R', nfsUrl(d.port, 'demo')]],
    ['nfs-ls of etclink (-> /etc)', ['nfs-ls', nfsUrl(d.port, 'demo', 'etclink')]],
    ['nfs-ls of uplink (-> ../../../etc)', ['nfs-ls', nfsUrl(d.port, 'demo', 'uplink')]],
    ['nfs-cat of pwlink (-> /etc/passwd)', ['nfs-cat', nfsUrl(d.port, 'demo', 'pwlink')]],
    ['nfs-cat of etclink/passwd', ['nfs-cat', nfsUrl(d.port, 'demo', 'etclink/passwd')]],
    ['nfs-cat of uplink/passwd', ['nfs-cat', nfsUrl(d.port, 'demo', 'uplink/passwd')]],
    ['nfs-cat of outlink (-> ../sentinel)', ['nfs-cat', nfsUrl(d.port, 'demo', 'outlink')]],
    ['nfs-cat of demo/../sentinel', ['nfs-cat', nfsUrl(d.port, 'demo', `../${sentinel}`)]],
    ['nfs-cat of /sentinel (the backend root as an export)', ['nfs-cat', nfsUrl(d.port, '', sentinel)]],
    ['nfs-ls of / (the backend root as an export)', ['nfs-ls', nfsUrl(d.port, '')]],
  ];
  for (const [what, [cmd, ...args]] of tries) {
    const r = await run(cmd!, args, T);
    t.notOk(leaked(r.stdout), `${what}: nothing from outside (exit ${r.code})`, { stdout: r.stdout.slice(0, 2000), stderr: r.stderr });
  }
});

t.test('the server checks permissions for the AUTH_SYS uid (libnfs uid=1000)', async (t) => {
  const d = await daemon(t, { shares: [{ id: 'demo' }] }); // share root: root's, 0755
  const root = path.join(d.exportsDir, 'demo');
  writeFileSync(path.join(root, 'public.txt'), 'public\n');
  chmodSync(path.join(root, 'public.txt'), 0o644);
  writeFileSync(path.join(root, 'private.txt'), 'PRIVATE\n');
  chmodSync(path.join(root, 'private.txt'), 0o600);
  const src = path.join(d.dir, 'small.txt');
  writeFileSync(src, 'from uid 1000\n');
  const as1000 = { uid: 1000, gid: 1000 };

  const pub = await run('nfs-cat', [nfsUrl(d.port, 'demo', 'public.txt', as1000)], T);
  t.equal(pub.stdout, 'public\n', 'uid 1000 reads a 0644 file of root', { stderr: pub.stderr });
  const priv = await run('nfs-cat', [nfsUrl(d.port, 'demo', 'private.txt', as1000)], T);
  t.not(priv.code, 0, 'uid 1000 cannot read a 0600 file of root');
  t.notMatch(priv.stdout, /PRIVATE/, 'and sees nothing of it');
  const cp = await run('nfs-cp', [src, nfsUrl(d.port, 'demo', 'made-by-1000.txt', as1000)], T);
  t.not(cp.code, 0, 'uid 1000 cannot create a file in a 0755 directory of root', { stdout: cp.stdout });
  t.notOk(existsSync(path.join(root, 'made-by-1000.txt')), 'no file was created');

  chmodSync(root, 0o777);
  const cp2 = await run('nfs-cp', [src, nfsUrl(d.port, 'demo', 'made-by-1000.txt', as1000)], T);
  t.equal(cp2.code, 0, 'uid 1000 creates a file in a 0777 directory', { stderr: cp2.stderr });
  const st = existsSync(path.join(root, 'made-by-1000.txt')) ? statSync(path.join(root, 'made-by-1000.txt')) : undefined;
  t.equal(st && `${st.uid}:${st.gid}`, '1000:1000', 'it is owned by 1000:1000 on disk');
});
