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
    ['cephfs without user', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m1'], secret_file: '/k' }), /^backends\[1\]\.user: is required for a cephfs backend/],
    ['cephfs kernel without secret', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m1'], user: 'u' }), /^backends\[1\]\.secret_file: is required for the kernel client/],
    ['cephfs kernel with keyring', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m1'], user: 'u', secret_file: '/s', keyring_file: '/k' }), /^backends\[1\]\.keyring_file: the kernel client takes secret_file/],
    ['cephfs kernel without monitors', (c) => c.backends.push({ id: 'c', type: 'cephfs', user: 'u', secret_file: '/s', conf_file: '/c' }), /^backends\[1\]\.monitors: the kernel client needs them/],
    ['cephfs bad client', (c) => c.backends.push({ id: 'c', type: 'cephfs', client: 'rados', monitors: ['m'], user: 'u', secret_file: '/s' }), /^backends\[1\]\.client: must be kernel or fuse/],
    ['cephfs user with client.', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m'], user: 'client manila', secret_file: '/s' }), /^backends\[1\]\.user: must be a cephx id/],
    ['inline secret', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m'], user: 'u', secret: 'AQB...' }), /^backends\[1\]\.secret: secrets are given only by file/],
    ['monitor with a comma', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['a,b'], user: 'u', secret_file: '/s' }), /^backends\[1\]\.monitors\[0\]: must be a host or host:port/],
    ['root with ..', (c) => c.backends.push({ id: 'c', type: 'cephfs', monitors: ['m'], user: 'u', secret_file: '/s', root: '/a/../..' }), /^backends\[1\]\.root: must be an absolute path without "\.\."/],
    ['option with a comma', (c) => c.backends.push({ id: 'c', type: 'glusterfs', servers: ['g1'], volume: 'v', options: ['a,b'] }), /^backends\[1\]\.options\[0\]: must be a mount option/],
    ['glusterfs without volume', (c) => c.backends.push({ id: 'c', type: 'glusterfs', servers: ['g1'] }), /^backends\[1\]\.volume: is required for a glusterfs backend/],
    ['glusterfs without servers', (c) => c.backends.push({ id: 'c', type: 'glusterfs', volume: 'v' }), /^backends\[1\]\.servers: is required/],
    ['glusterfs empty servers', (c) => c.backends.push({ id: 'c', type: 'glusterfs', servers: [], volume: 'v' }), /^backends\[1\]\.servers: is required/],
    ['glusterfs server with a port', (c) => c.backends.push({ id: 'c', type: 'glusterfs', servers: ['gl1:24007'], volume: 'v' }), /^backends\[1\]\.servers\[0\]: must be a host name or IPv4 address, without a port/],
    ['secret as a mount option', (c) => c.backends.push({ id: 'c', type: 'nfs', server: 'f', export: '/e', options: ['password=hunter2'] }), /^backends\[1\]\.options\[0\]: secrets are given only by file/],
    ['gpfs relative mountpoint', (c) => c.backends.push({ id: 'c', type: 'gpfs', device: 'gpfs0', mountpoint: 'gpfs' }), /^backends\[1\]\.mountpoint: must be an absolute path/],
    ['gpfs mmmount not boolean', (c) => c.backends.push({ id: 'c', type: 'gpfs', device: 'gpfs0', mountpoint: '/gpfs', mmmount: 'yes' }), /^backends\[1\]\.mmmount: must be a boolean/],
    ['nfs version', (c) => c.backends.push({ id: 'c', type: 'nfs', server: 'filer', export: '/ifs', version: 2 }), /^backends\[1\]\.version: must be 3, 4, 4\.0, 4\.1 or 4\.2/],
    ['nfs vers in options', (c) => c.backends.push({ id: 'c', type: 'nfs', server: 'filer', export: '/ifs', options: ['vers=4'] }), /^backends\[1\]\.options: give the version in backends\[1\]\.version/],
    ['nfs unknown field', (c) => c.backends.push({ id: 'c', type: 'nfs', server: 'filer', export: '/ifs', volume: 'x' }), /^backends\[1\]\.volume: is not a known field for a nfs backend/],
    ['op timeout range', (c) => (c.backends[0].op_timeout_ms = 10), /^backends\[0\]\.op_timeout_ms: must be a whole number from 50 to 600000/],
    ['max inflight range', (c) => (c.backends[0].max_inflight = 0), /^backends\[0\]\.max_inflight: must be a whole number from 1 to 1024/],
    ['listing cache range', (c) => (c.backends[0].listing_cache_ms = 60_001), /^backends\[0\]\.listing_cache_ms: must be a whole number from 0 to 60000/],
    ['listing cache type', (c) => (c.backends[0].listing_cache_ms = '1s'), /^backends\[0\]\.listing_cache_ms: must be a whole number from 0 to 60000/],
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

t.test('backends: every type with its fields, defaults filled in', async (t) => {
  const config = parseConfig(
    {
      node_id: 'n1',
      state_dir: '/var/lib/mg',
      runtime_dir: '/run/mg',
      listen: { tcp: [{ host: '127.0.0.1', port: 0 }] },
      backends: [
        { id: 'l', type: 'local', path: 'shares', max_inflight: 4, op_timeout_ms: 500, health_interval_s: 0.5, listing_cache_ms: 0 },
        { id: 'ck', type: 'cephfs', monitors: ['10.0.0.1:6789', '[fd00::1]:3300'], fs_name: 'cephfs', user: 'manila', secret_file: 'manila.secret', root: '/volumes/a/' },
        { id: 'cf', type: 'cephfs', client: 'fuse', user: 'manila', keyring_file: '/etc/ceph/k', conf_file: '/etc/ceph/ceph.conf' },
        { id: 'g', type: 'glusterfs', servers: ['gl1.example', 'gl2.example'], volume: 'vol0', options: ['log-level=WARNING'] },
        { id: 'p', type: 'gpfs', device: 'gpfs0', mountpoint: '/gpfs/fs0', mmmount: true },
        { id: 'f', type: 'nfs', server: 'isilon.example', export: '/ifs/data', version: 4.1, options: ['hard', 'timeo=600'] },
      ],
    },
    'test',
    '/etc/mg',
  );
  t.equal(config.runtimeDir, '/run/mg');
  const [local, kernel, fuse, gluster, gpfs, nfs] = config.backends;
  t.match(local, { type: 'local', path: '/etc/mg/shares', maxInflight: 4, opTimeoutMs: 500, healthIntervalMs: 500, healthTimeoutMs: 5000, unmountGraceMs: 300000, listingCacheMs: 0 });
  t.match(kernel, { type: 'cephfs', client: 'kernel', secretFile: '/etc/mg/manila.secret', root: '/volumes/a/', fsName: 'cephfs', maxInflight: 32, opTimeoutMs: 10000, listingCacheMs: 1000 });
  t.match(fuse, { type: 'cephfs', client: 'fuse', monitors: [], keyringFile: '/etc/ceph/k', root: '/' });
  t.match(gluster, { type: 'glusterfs', servers: ['gl1.example', 'gl2.example'], volume: 'vol0' });
  t.match(gpfs, { type: 'gpfs', device: 'gpfs0', mountpoint: '/gpfs/fs0', mmmount: true, binDir: '/usr/lpp/mmfs/bin' });
  t.match(nfs, { type: 'nfs', version: '4.1', export: '/ifs/data', options: ['hard', 'timeo=600'] });
  t.equal(parseConfig({ node_id: 'n', state_dir: '/s', listen: { tcp: [{ host: '127.0.0.1', port: 0 }] } }, 't').runtimeDir, '/run/manila-gateway');
});
