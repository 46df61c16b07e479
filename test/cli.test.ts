// The command line as operators and the quick start use it: check-config's answers and exit codes,
// and the embedded default (`npm start` = `manila-gateway demo`) serving a real client.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliPath, daemonCommand, daemonNodeFlags, repoRoot, run, nfsUrl } from './helpers/daemon.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// The V8 flags are spelt out where a file cannot be read (the shebang, `npm start`); a flag added
// to one and not the others would run the daemon differently from how it was measured.
t.test('the bin and npm start run node with the flags of bin/node-flags.cjs', async (t) => {
  t.ok(daemonNodeFlags.includes('--no-parallel-scavenge') && daemonNodeFlags.every((flag) => flag.startsWith('--')), daemonNodeFlags.join(' '));
  const shebang = readFileSync(path.join(repoRoot, 'bin', 'manila-gateway.cjs'), 'utf8').split('\n')[0];
  t.equal(shebang, `#!/usr/bin/env -S node ${daemonNodeFlags.join(' ')}`);
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.start, `node ${daemonNodeFlags.join(' ')} bin/manila-gateway.cjs demo`);
  // node refuses to start on a flag it does not know: the bin started by its own first line (env -S) still runs.
  const shown = await run(cliPath, ['--version'], { timeoutMs: 20_000, env: { ...process.env, NODE_OPTIONS: '' } });
  t.equal(shown.code, 0, shown.stderr);
});

t.test('check-config: ok, and each bad field named with exit 1', async (t) => {
  const good = path.join(dir, 'good.yaml');
  writeFileSync(
    good,
    `node_id: n1
state_dir: ./state
listen: { tcp: [{ host: 127.0.0.1, port: 2049 }] }
backends: [{ id: local1, type: local, path: /srv/exports }]
grants:
  - { id: g1, share: demo, backend: local1, path: demo, guest: { tcp: 127.0.0.1 }, access: rw, squash: none }
`,
  );
  const ok = await run(process.execPath, [cliPath, 'check-config', '--config', good], { timeoutMs: 20_000 });
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /good\.yaml: ok/);

  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    `node_id: n1
state_dir: ./state
listen: { tcp: [{ host: 127.0.0.1, port: 99999 }] }
backends: [{ id: local1, type: local, path: /srv/exports }]
grants:
  - { id: g1, share: demo, backend: nope, path: ../etc, guest: { tcp: 127.0.0.1 }, access: write }
`,
  );
  const refused = await run(process.execPath, [cliPath, 'check-config', '--config', bad], { timeoutMs: 20_000 });
  t.equal(refused.code, 1);
  t.match(refused.stderr, /listen\.tcp\[0\]\.port: must be <= 65535/);
  t.match(refused.stderr, /grants\[0\]\.access: must be one of rw, ro/);

  const semantic = path.join(dir, 'semantic.yaml');
  writeFileSync(semantic, (await import('node:fs')).readFileSync(good, 'utf8').replace('backend: local1, path: demo', 'backend: nope, path: ../etc'));
  const named = await run(process.execPath, [cliPath, 'check-config', '--config', semantic], { timeoutMs: 20_000 });
  t.equal(named.code, 1);
  t.match(named.stderr, /grants\[0\]\.backend: no backend with id nope/);
  t.match(named.stderr, /grants\[0\]\.path: must not contain '\.\.'/);

  const missing = await run(process.execPath, [cliPath, 'check-config', '--config', path.join(dir, 'none.yaml')], { timeoutMs: 20_000 });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /none\.yaml: invalid config:\s+cannot read: ENOENT/);

  const usage = await run(process.execPath, [cliPath, 'serve'], { timeoutMs: 20_000 });
  t.equal(usage.code, 2, 'serve without --config is a usage error');
  t.match(usage.stderr, /--config FILE is required/);
});

t.test('serve refuses a bad config before binding anything', async (t) => {
  const bad = path.join(dir, 'serve-bad.yaml');
  writeFileSync(bad, 'node_id: n1\nstate_dir: ./s\nlisten: { tcp: [{ host: 127.0.0.1, port: 0 }] }\nbackends: [{ id: c, type: cephfs }]\n');
  const result = await run(process.execPath, [cliPath, 'serve', '--config', bad], { timeoutMs: 20_000 });
  t.equal(result.code, 1);
  t.match(result.stderr, /backends\[0\]\.user: is required for a cephfs backend/);
});

t.test('the embedded default: controller and gateway in one process, a local directory served', async (t) => {
  const demoDir = path.join(dir, 'demo');
  const child = spawn(...daemonCommand(['demo', '--dir', demoDir, '--port', '0', '--controller-port', '0']), { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => child.kill('SIGKILL'));
  let stderr = '';
  const printed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no mount command printed: ${stderr}`)), 20_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (/libnfs:/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  await printed;
  t.ok(existsSync(path.join(demoDir, 'exports', 'demo')), 'the share directory was created');
  const mount = /mount -t nfs -o (\S+) 127\.0\.0\.1:\/demo/.exec(stderr);
  t.ok(mount, 'a kernel mount command is printed');
  const port = Number(/port=(\d+)/.exec(mount?.[1] ?? '')?.[1]);
  t.ok(port > 0, `on port ${port}`);
  t.match(stderr, new RegExp(`nfs-ls "nfs://127\\.0\\.0\\.1/demo\\?version=3&nfsport=${port}&mountport=${port}"`));
  writeFileSync(path.join(demoDir, 'exports', 'demo', 'hello.txt'), 'hello from the demo\n');
  const cat = await run('nfs-cat', [nfsUrl(port, 'demo', 'hello.txt')], { timeoutMs: 30_000 });
  t.equal(cat.code, 0, cat.stderr);
  t.equal(cat.stdout, 'hello from the demo\n', 'a real client reads through the printed port');

  // The grant came from the in-process controller, and its API adds more.
  const api = /controller API: curl (http:\/\/127\.0\.0\.1:\d+)\/v1\/grants/.exec(stderr)?.[1];
  t.ok(api, 'the controller API is printed');
  const listed = (await (await fetch(`${api}/v1/grants`)).json()) as { grants: { id: string }[] };
  t.same(listed.grants.map((g) => g.id), ['demo'], 'the demo grant lives at the controller');
  const gateways = (await (await fetch(`${api}/v1/gateways`)).json()) as { gateways: { node_id: string; connected: boolean }[] };
  t.match(gateways.gateways, [{ node_id: 'demo', connected: true }], 'the gateway is connected over loopback');
  mkdirSync(path.join(demoDir, 'exports', 'more'));
  const posted = await fetch(`${api}/v1/grants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'more', node_id: 'demo', share: 'more', backend: 'local', path: 'more', guest: { tcp: '127.0.0.1' } }),
  });
  t.equal(posted.status, 201);
  let ls = await run('nfs-ls', [nfsUrl(port, 'more')], { timeoutMs: 30_000 });
  for (let i = 0; i < 50 && ls.code !== 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    ls = await run('nfs-ls', [nfsUrl(port, 'more')], { timeoutMs: 30_000 });
  }
  t.equal(ls.code, 0, `a grant added through the API is served: ${ls.stderr}`);

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops it cleanly');
});
