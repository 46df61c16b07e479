// `manila-gateway controller` as an operator runs it (the built daemon: `npm run build` first):
// bad arguments exit 2 naming the option, a good start logs "controller listening", SIGTERM stops.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { daemonCommand, run } from '../helpers/daemon.js';
import { FakeGateway, grantDoc, request } from './helpers/controller.js';

const controller = (args: string[]) => {
  const [cmd, argv] = daemonCommand(['controller', ...args]);
  return run(cmd, argv, { timeoutMs: 20_000 });
};

t.test('bad arguments: a message on stderr, exit 2', async (t) => {
  const dir = t.testdir({ empty: '  \n', token: 'tok\n', 'bad.json': '{' });
  const state = path.join(dir, 'state.json');
  const cases: Array<[string[], RegExp]> = [
    [['--state', state], /--listen HOST:PORT is required/],
    [['--listen', '127.0.0.1:0'], /--state FILE is required/],
    [['--listen', '127.0.0.1', '--state', state], /--listen 127\.0\.0\.1: must be HOST:PORT/],
    [['--listen', '127.0.0.1:99999', '--state', state], /--listen 127\.0\.0\.1:99999: must be HOST:PORT/],
    [['--listen', '127.0.0.1:0', '--state', state, '--bogus'], /Unknown option '--bogus'/],
    [['--listen', '127.0.0.1:0', '--state', state, '--token-file', path.join(dir, 'empty')], /--token-file .*empty: is empty/],
    [['--listen', '127.0.0.1:0', '--state', state, '--token-file', path.join(dir, 'missing')], /--token-file .*missing: ENOENT/],
    [['--listen', '127.0.0.1:0', '--state', state, '--tls-cert', path.join(dir, 'token')], /--tls-cert and --tls-key go together/],
    [['--listen', '127.0.0.1:0', '--state', state, '--client-ca', path.join(dir, 'token')], /--client-ca needs --tls-cert and --tls-key/],
    [['--listen', '127.0.0.1:0', '--state', state, '--heartbeat-ms', '100'], /--heartbeat-ms 100: must be an integer from 250 to 60000/],
    [['--listen', '127.0.0.1:0', '--state', state, '--heartbeat-ms', '2s'], /--heartbeat-ms 2s/],
  ];
  for (const [args, message] of cases) {
    const r = await controller(args);
    t.equal(r.code, 2, `${args.join(' ')} -> exit 2`);
    t.match(r.stderr, message, r.stderr.split('\n')[0]);
  }
  const corrupt = await controller(['--listen', '127.0.0.1:0', '--state', path.join(dir, 'bad.json')]);
  t.equal(corrupt.code, 1, 'a corrupt state file: exit 1');
  t.match(corrupt.stderr, /state file .*bad\.json: is not JSON/);
});

t.test('runs, logs where it listens, stops on SIGTERM', async (t) => {
  const dir = t.testdir({ token: '  s3cret \n' });
  const state = path.join(dir, 'state.json');
  const [cmd, argv] = daemonCommand(['controller', '--listen', '127.0.0.1:0', '--state', state, '--token-file', path.join(dir, 'token'), '--heartbeat-ms', '500']);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  const listening = await new Promise<Record<string, string>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not listening after 20 s:\n${out}`)), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue;
        const rec = JSON.parse(line) as Record<string, string>;
        if (rec.msg === 'controller listening') {
          clearTimeout(timer);
          resolve(rec);
        }
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    void exited.then((code) => reject(new Error(`exited ${code}:\n${out}`)));
  });
  t.equal(listening.level as unknown, 30, 'at info');
  t.match(listening.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal(listening.gatewayUrl, `${listening.url.replace('http:', 'ws:')}/v1/gateway`);
  t.equal((await request(listening.url, 'POST', '/v1/grants', { body: grantDoc() })).status, 401);
  t.equal((await request(listening.url, 'POST', '/v1/grants', { body: grantDoc(), token: 's3cret' })).status, 201, 'the token file, trimmed');
  const gw = await FakeGateway.connect(listening.gatewayUrl!, { token: 's3cret' });
  t.teardown(() => gw.ws.terminate());
  const { welcome } = await gw.join('n1');
  t.equal(welcome.heartbeatIntervalMs, 500);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0 on SIGTERM');
  t.equal((await gw.closed).code, 1001);
});
