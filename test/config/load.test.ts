import t from 'tap';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, parseConfig, ConfigError } from '../../src/config/load.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

const good = `
node_id: compute-01
state_dir: ./state
listen:
  tcp: [{ host: 127.0.0.1, port: 2049 }]
backends:
  - { id: local1, type: local, path: /srv/exports }
grants:
  - { id: g1, share: demo, backend: local1, path: demo, guest: { tcp: 127.0.0.1 }, access: rw, squash: none }
  - { id: g2, share: demo, backend: local1, path: demo, guest: { tcp: 10.1.1.1 }, access: ro }
`;

t.test('the DESIGN.md shape loads', async (t) => {
  const config = loadConfig(write('good.yaml', good));
  t.equal(config.nodeId, 'compute-01');
  t.equal(config.stateDir, path.join(dir, 'state'), 'relative state_dir resolves beside the file');
  t.same(config.listen.tcp, [{ host: '127.0.0.1', port: 2049 }]);
  t.equal(config.grants.length, 2);
  t.equal(config.grants[0]!.squash, 'none');
  t.equal(config.grants[1]!.squash, 'root', 'squash defaults to root');
  t.equal(config.grants[1]!.anonUid, 65534);
  t.equal(config.grants[1]!.access, 'ro');
});

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw, 'x.yaml');
  } catch (error) {
    t.type(error, ConfigError);
    t.equal((error as ConfigError).code, 'CONFIG_INVALID');
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const base = () => ({
  node_id: 'n1',
  state_dir: '/tmp/s',
  listen: { tcp: [{ host: '127.0.0.1', port: 2049 }] },
  backends: [{ id: 'b', type: 'local', path: '/srv' }],
  grants: [{ id: 'g', share: 's', backend: 'b', path: 's', guest: { tcp: '127.0.0.1' } }],
});

t.test('bad fields are named', async (t) => {
  const cases: [string, (c: any) => void, RegExp][] = [
    ['missing node_id', (c) => delete c.node_id, /^node_id: is required/],
    ['bad access', (c) => (c.grants[0].access = 'rwx'), /^grants\[0\]\.access: must be one of rw, ro/],
    ['bad squash', (c) => (c.grants[0].squash = 'no'), /^grants\[0\]\.squash: must be one of none, root, all/],
    ['unknown field', (c) => (c.grants[0].colour = 1), /^grants\[0\]\.colour: is not a known field/],
    ['two guest kinds', (c) => (c.grants[0].guest = { tcp: '127.0.0.1', cid: 3 }), /^grants\[0\]\.guest: must have exactly one/],
    ['port range', (c) => (c.listen.tcp[0].port = 70000), /^listen\.tcp\[0\]\.port: must be <= 65535/],
    ['unknown backend', (c) => (c.grants[0].backend = 'nope'), /^grants\[0\]\.backend: no backend with id nope/],
    ['dotdot path', (c) => (c.grants[0].path = 'a/../../etc'), /^grants\[0\]\.path: must not contain '\.\.'/],
    ['tcp not an address', (c) => (c.grants[0].guest = { tcp: 'example.com' }), /^grants\[0\]\.guest\.tcp: example\.com is not an IP address/],
    ['duplicate grant id', (c) => c.grants.push({ ...c.grants[0], guest: { tcp: '10.0.0.9' } }), /^grants\[1\]\.id: duplicate grant id g/],
    ['share in two places', (c) => c.grants.push({ ...c.grants[0], id: 'g2', path: 'other', guest: { tcp: '10.0.0.9' } }), /^grants\[1\]\.path: share s is b:s, not b:other/],
    ['nested shares', (c) => c.grants.push({ ...c.grants[0], id: 'g2', share: 'inner', path: 's/sub' }), /^grants\[1\]\.path: share inner \(b:s\/sub\) would be inside share s/],
    ['one guest, one grant per share', (c) => c.grants.push({ ...c.grants[0], id: 'g2' }), /^grants\[1\]\.guest: share s is granted to this guest already by grant g/],
    ['bad share id', (c) => (c.grants[0].share = '../x'), /^grants\[0\]\.share: must be letters/],
    ['no listener', (c) => (c.listen = {}), /^listen: needs at least one listener/],
    ['hybrid path too long', (c) => (c.listen.hybrid_vsock = [{ path: `/${'x'.repeat(120)}`, guest: 'vm1' }]), /^listen\.hybrid_vsock\[0\]\.path: must NOT have more than 107 characters/],
    ['hybrid path twice', (c) => (c.listen.hybrid_vsock = [{ path: '/run/a', guest: 'vm1' }, { path: '/run/a', guest: 'vm2' }]), /^listen\.hybrid_vsock\[1\]\.path: \/run\/a is given twice/],
    ['hybrid bad mode', (c) => (c.listen.hybrid_vsock = [{ path: '/run/a', guest: 'vm1', mode: '0999' }]), /^listen\.hybrid_vsock\[0\]\.mode: /],
    ['hybrid bad guest', (c) => (c.listen.hybrid_vsock = [{ path: '/run/a', guest: '../x' }]), /^listen\.hybrid_vsock\[0\]\.guest: must be letters/],
    ['vsock port range', (c) => (c.listen.vsock = [{ port: -1 }]), /^listen\.vsock\[0\]\.port: must be >= 0/],
    ['metrics host', (c) => (c.metrics = { host: 'example.com', port: 9632 }), /^metrics\.host: example\.com is not an IP address/],
    ['drain timeout', (c) => (c.limits = { drain_timeout_s: 9999 }), /^limits\.drain_timeout_s: must be <= 600/],
    ['not yet: cephfs', (c) => c.backends.push({ id: 'c', type: 'cephfs' }), /^backends\[1\]\.type: backend type cephfs is not available/],
  ];
  for (const [name, mutate, expected] of cases) {
    const raw = base();
    mutate(raw);
    const found = problems(raw);
    t.ok(found.some((p) => expected.test(p)), `${name}: ${found.join(' | ')}`);
  }
});

t.test('YAML syntax errors and unreadable files', async (t) => {
  t.throws(() => loadConfig(write('bad.yaml', 'node_id: [\n')), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig(write('dup.yaml', 'node_id: a\nnode_id: b\n')), { code: 'CONFIG_INVALID' });
  t.throws(() => loadConfig(path.join(dir, 'missing.yaml')), { code: 'CONFIG_INVALID', message: /cannot read: ENOENT/ });
});

t.test('controller: where it is and how the gateway proves who it is', async (t) => {
  const token = write('token', 'tok\n');
  const empty = write('empty-token', '\n');
  const ok = parseConfig({ ...base(), controller: { urls: ['wss://c1:8443/v1/gateway', 'wss://c2:8443/v1/gateway'], token_file: 'token', ca_file: token, cert_file: token, key_file: token } }, 'x.yaml', dir);
  t.same(ok.controller, { urls: ['wss://c1:8443/v1/gateway', 'wss://c2:8443/v1/gateway'], tokenFile: token, caFile: token, certFile: token, keyFile: token }, 'relative files resolve beside the config');
  t.same(parseConfig({ ...base(), controller: { url: 'ws://127.0.0.1:8080/v1/gateway' } }, 'x.yaml').controller, { urls: ['ws://127.0.0.1:8080/v1/gateway'] });
  t.equal(parseConfig(base(), 'x.yaml').controller, undefined, 'optional');
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['neither url nor urls', {}, /^controller: needs exactly one of url, urls/],
    ['both url and urls', { url: 'ws://a/', urls: ['ws://b/'] }, /^controller: needs exactly one of url, urls/],
    ['http scheme', { url: 'http://a/' }, /^controller\.url: must start with ws:\/\/ or wss:\/\//],
    ['not a url', { urls: ['ws://a/', 'nope'] }, /^controller\.urls\[1\]: nope is not a URL/],
    ['unreadable token', { url: 'ws://a/', token_file: path.join(dir, 'missing') }, /^controller\.token_file: cannot read .*missing \(ENOENT\)/],
    ['empty token', { url: 'ws://a/', token_file: empty }, /^controller\.token_file: .* is empty/],
    ['cert without key', { url: 'wss://a/', cert_file: token }, /^controller: cert_file and key_file go together/],
    ['TLS files on ws://', { url: 'ws://a/', ca_file: token }, /^controller\.ca_file: only applies to wss:\/\/ urls/],
    ['unknown field', { url: 'ws://a/', colour: 1 }, /^controller\.colour: is not a known field/],
  ];
  for (const [name, controller, expected] of cases) {
    const found = problems({ ...base(), controller });
    t.ok(found.some((p) => expected.test(p)), `${name}: ${found.join(' | ')}`);
  }
});

t.test('guest channels and metrics', async (t) => {
  const config = parseConfig(
    {
      ...base(),
      listen: {
        vsock: [{ port: 2049 }, { port: 2050, cid: 2 }],
        hybrid_vsock: [{ path: 'vm1.vsock_2049', guest: 'vm1', owner: 'root', group: 0, mode: '0660' }],
      },
      metrics: { port: 9632 },
      limits: { drain_timeout_s: 3 },
    },
    'x.yaml',
    '/run/vm',
  );
  t.same(config.listen.tcp, []);
  t.same(config.listen.vsock, [{ port: 2049 }, { port: 2050, cid: 2 }]);
  t.same(config.listen.hybridVsock, [{ path: '/run/vm/vm1.vsock_2049', guest: 'vm1', owner: 'root', group: 0, mode: 0o660 }], 'relative paths resolve beside the file');
  t.same(config.metrics, { host: '127.0.0.1', port: 9632 }, 'metrics on loopback unless told');
  t.equal(config.limits.drainTimeoutMs, 3000);
  t.equal(parseConfig(base(), 'x.yaml').listen.hybridVsock[0]?.mode, undefined);
  t.equal(parseConfig({ ...base(), listen: { hybrid_vsock: [{ path: '/a', guest: 'v' }] } }, 'x.yaml').listen.hybridVsock[0]?.mode, 0o600, 'sockets are 0600 unless told');
});
