// The reference controller's HTTP API: status codes, validation naming the field, the node's
// grant rules, authentication, and the durable state file behind it.
import t from 'tap';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { startController } from '../../src/controller/server.js';
import { FakeGateway, gatewayView, grantDoc, request, start } from './helpers/controller.js';

t.test('healthz answers without a token, as JSON', async (t) => {
  const c = await start(t, { token: 'sekrit' });
  const r = await request(c.url, 'GET', '/healthz');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.same(r.body, { ok: true });
});

t.test('create, get, list, replace, delete', async (t) => {
  const c = await start(t);
  const created = await request(c.url, 'POST', '/v1/grants', { body: grantDoc() });
  t.equal(created.status, 201, created.text);
  t.match(created.headers['content-type'], /^application\/json/);
  t.same(
    created.body,
    { id: 'g1', share: 's1', backend: 'b1', path: 's1', guest: { tcp: '10.0.0.1' }, access: 'rw', squash: 'root', anon_uid: 65534, anon_gid: 65534, node_id: 'n1' },
    'stored document with the defaults written out',
  );
  t.equal((await gatewayView(c, 'n1')).revision, 1);

  const got = await request(c.url, 'GET', '/v1/grants/g1');
  t.equal(got.status, 200);
  t.same(got.body, created.body);

  t.equal((await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g0', share: 's0', path: 'x/s0' }) })).status, 201);
  const list = await request(c.url, 'GET', '/v1/grants');
  t.equal(list.status, 200);
  t.same(list.body.grants.map((g: { id: string }) => g.id), ['g0', 'g1'], 'sorted by id');
  t.equal(list.body.grants[0].path, 'x/s0');
  t.equal((await gatewayView(c, 'n1')).revision, 2);

  const replaced = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ access: 'ro' }) });
  t.equal(replaced.status, 200, 'replacing an id -> 200');
  t.equal(replaced.body.access, 'ro');
  t.equal((await gatewayView(c, 'n1')).revision, 3);

  const same = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ access: 'ro', squash: 'root', anon_uid: 65534 }) });
  t.equal(same.status, 200, 'an identical document -> 200');
  t.equal((await gatewayView(c, 'n1')).revision, 3, '... without a new revision');

  const deleted = await request(c.url, 'DELETE', '/v1/grants/g1');
  t.equal(deleted.status, 204);
  t.equal(deleted.text, '');
  t.equal((await gatewayView(c, 'n1')).revision, 4);
  t.equal((await request(c.url, 'DELETE', '/v1/grants/g1')).status, 404, 'deleting twice -> 404');
  const missing = await request(c.url, 'GET', '/v1/grants/g1');
  t.equal(missing.status, 404);
  t.match(missing.body.error, /g1/);
  t.same((await request(c.url, 'GET', '/v1/grants')).body.grants.map((g: { id: string }) => g.id), ['g0']);
});

t.test('a grant moved to another node: a revoke on the old node, an upsert on the new one', async (t) => {
  const c = await start(t);
  await request(c.url, 'POST', '/v1/grants', { body: grantDoc() });
  const moved = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ node_id: 'n2' }) });
  t.equal(moved.status, 200);
  t.equal(moved.body.node_id, 'n2');
  t.same(JSON.parse(readFileSync(c.stateFile, 'utf8')).nodes, { n1: { revision: 2 }, n2: { revision: 1 } });
  t.equal(await gatewayView(c, 'n1'), undefined, 'n1 holds nothing now (and never connected)');
  t.equal((await gatewayView(c, 'n2')).revision, 1);
  t.same(Object.keys((await gatewayView(c, 'n2')).grants), ['g1']);
  const back = await request(c.url, 'POST', '/v1/grants', { body: grantDoc() });
  t.equal(back.status, 200, 'and back');
  t.same(JSON.parse(readFileSync(c.stateFile, 'utf8')).nodes, { n1: { revision: 3 }, n2: { revision: 2 } });
});

t.test('400 naming the field', async (t) => {
  const c = await start(t);
  const cases: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{"id": "g1",', /^body: is not JSON/],
    ['an array', [grantDoc()], /^body: must be a JSON object/],
    ['null', 'null', /^body: must be a JSON object/],
    ['a string', '"g1"', /^body: must be a JSON object/],
    ['missing node_id', grantDoc({ node_id: undefined }), /^node_id: is required/],
    ['bad node_id', grantDoc({ node_id: '../n1' }), /^node_id: must be letters/],
    ['node_id not a string', grantDoc({ node_id: 7 }), /^node_id: must be letters/],
    ['unknown field', grantDoc({ colour: 'blue' }), /colour: is not a known field/],
    ['missing id', grantDoc({ id: undefined }), /id: is required/],
    ['bad guest address', grantDoc({ guest: { tcp: 'not-an-ip' } }), /guest\.tcp: not-an-ip is not an IP address/],
    ['two guest kinds', grantDoc({ guest: { tcp: '10.0.0.1', cid: 5 } }), /guest: must have exactly one of tcp, cid, vm/],
    ['a reserved cid', grantDoc({ guest: { cid: 2 } }), /guest\.cid/],
    ['.. in the path', grantDoc({ path: 'a/../../etc' }), /path: must not contain '\.\.'/],
    ['bad access', grantDoc({ access: 'rwx' }), /access: must be one of rw, ro/],
    ['bad squash', grantDoc({ squash: 'some' }), /squash: must be one of none, root, all/],
    ['bad anon_uid', grantDoc({ anon_uid: -1 }), /anon_uid/],
    ['bad share id', grantDoc({ share: '-s' }), /share: must be letters/],
  ];
  for (const [what, body, expected] of cases) {
    const r = await request(c.url, 'POST', '/v1/grants', { body: body as string });
    t.equal(r.status, 400, `${what} -> 400`);
    t.match(r.headers['content-type'], /^application\/json/);
    t.match(r.body?.error, expected, `${what}: ${r.body?.error}`);
  }
  const both = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ node_id: undefined, access: 'x' }) });
  t.match(both.body.error, /node_id: is required; access: must be one of/, 'every problem named');
  t.same((await request(c.url, 'GET', '/v1/grants')).body.grants, [], 'nothing stored');
  t.same(JSON.parse(readFileSync(c.stateFile, 'utf8')).nodes, {}, 'no revision spent');
});

t.test("409 for a grant that breaks the node's rules", async (t) => {
  const c = await start(t);
  t.equal((await request(c.url, 'POST', '/v1/grants', { body: grantDoc() })).status, 201);
  const conflict = await request(c.url, 'POST', '/v1/grants', {
    body: grantDoc({ id: 'g2', path: 'elsewhere', guest: { tcp: '10.0.0.2' } }),
  });
  t.equal(conflict.status, 409);
  t.equal(conflict.body.code, 'GRANT_SHARE_CONFLICT');
  t.match(conflict.body.error, /share s1 is b1:s1/);
  const dupGuest = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g3' }) });
  t.equal(dupGuest.status, 409);
  t.equal(dupGuest.body.code, 'GRANT_DUPLICATE_GUEST');
  const nested = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g4', share: 's4', path: 's1/inner' }) });
  t.equal(nested.status, 409);
  t.equal(nested.body.code, 'GRANT_SHARE_NESTED');
  t.equal((await gatewayView(c, 'n1')).revision, 1, 'refused changes spend no revision');
  const otherNode = await request(c.url, 'POST', '/v1/grants', {
    body: grantDoc({ id: 'g2', path: 'elsewhere', guest: { tcp: '10.0.0.2' }, node_id: 'n2' }),
  });
  t.equal(otherNode.status, 201, 'the rules are per node');
  const moveIntoConflict = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g2', node_id: 'n1', path: 'elsewhere', guest: { tcp: '10.0.0.2' } }) });
  t.equal(moveIntoConflict.status, 409, 'moving into a conflict is refused');
  t.equal((await request(c.url, 'GET', '/v1/grants/g2')).body.node_id, 'n2', '... and leaves the grant where it was');
});

t.test('413 for a body over 1 MiB', async (t) => {
  const c = await start(t);
  const big = JSON.stringify(grantDoc({ path: 'a'.repeat(1024 * 1024) }));
  const r = await request(c.url, 'POST', '/v1/grants', { body: big });
  t.equal(r.status, 413);
  t.match(r.body.error, /^body: is larger than 1048576 bytes/);
  const exact = await request(c.url, 'POST', '/v1/grants', { body: ' '.repeat(1024 * 1024) });
  t.equal(exact.status, 400, 'exactly 1 MiB is read (and is not JSON)');
});

t.test('404 and 405', async (t) => {
  const c = await start(t);
  for (const p of ['/', '/v1', '/v1/grants/', '/v1/grants/a/b', '/v2/grants', '/healthz/x']) {
    const r = await request(c.url, 'GET', p);
    t.equal(r.status, 404, `GET ${p}`);
    t.match(r.headers['content-type'], /^application\/json/);
    t.type(r.body.error, 'string');
  }
  for (const [method, p] of [['PUT', '/v1/grants'], ['DELETE', '/v1/grants'], ['POST', '/v1/gateways'], ['PUT', '/v1/grants/g1'], ['POST', '/healthz']]) {
    const r = await request(c.url, method!, p!);
    t.equal(r.status, 405, `${method} ${p}`);
    t.match(r.headers['content-type'], /^application\/json/);
    t.ok(r.headers.allow, 'Allow is given');
  }
  const plain = await request(c.url, 'GET', '/v1/gateway');
  t.equal(plain.status, 426, 'the websocket path without an upgrade');
  await t.rejects(FakeGateway.connect(c.url.replace('http', 'ws') + '/v1/other'), { message: 'upgrade refused: 404' }, 'upgrade to another path -> 404');
});

t.test('bearer token: API and websocket', async (t) => {
  const c = await start(t, { token: 'the-token' });
  for (const [what, token] of [['no token', undefined], ['a wrong token', 'the-tokeN'], ['a longer token', 'the-token-and-more'], ['empty', '']] as const) {
    const r = await request(c.url, 'GET', '/v1/grants', token === undefined ? {} : { token });
    t.equal(r.status, 401, `API with ${what}`);
    t.match(r.headers['content-type'], /^application\/json/);
    t.equal(r.headers['www-authenticate'], 'Bearer');
    const post = await request(c.url, 'POST', '/v1/grants', { body: grantDoc(), ...(token === undefined ? {} : { token }) });
    t.equal(post.status, 401, `POST with ${what}`);
    await t.rejects(FakeGateway.connect(c.gatewayUrl, token === undefined ? {} : { token }), { message: 'upgrade refused: 401' }, `websocket with ${what}`);
  }
  t.equal((await request(c.url, 'GET', '/nowhere')).status, 401, 'unknown paths need the token too');
  t.equal((await request(c.url, 'GET', '/v1/grants', { headers: { authorization: 'Basic dGhlLXRva2Vu' } })).status, 401, 'not Bearer');
  t.equal((await request(c.url, 'POST', '/v1/grants', { body: grantDoc(), token: 'the-token' })).status, 201);
  t.equal((await request(c.url, 'GET', '/v1/grants', { token: 'the-token' })).body.grants.length, 1);
  const gw = await FakeGateway.connect(c.gatewayUrl, { token: 'the-token' });
  t.teardown(() => gw.ws.terminate());
  const { snapshot } = await gw.join('n1');
  t.equal(snapshot.grants.length, 1, 'the right token opens the websocket');
  t.notOk(c.logs.some((l) => JSON.stringify(l).includes('the-token')), 'the token is never logged');
});

t.test('persistence: a restart keeps grants, epoch and revisions', async (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'sub', 'state.json');
  const first = await startController({ host: '127.0.0.1', port: 0, stateFile: file, logger: pino({ level: 'silent' }) });
  let firstStopped = false;
  t.teardown(() => (firstStopped ? undefined : first.stop()));
  await request(first.url, 'POST', '/v1/grants', { body: grantDoc() });
  await request(first.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g2', share: 's2', path: 's2', guest: { cid: 9 }, squash: 'all', anon_uid: 1000 }) });
  await request(first.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g3', share: 's3', path: 's3', node_id: 'n2' }) });
  await request(first.url, 'DELETE', '/v1/grants/g3');
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  t.equal(saved.format, 1);
  t.match(saved.epoch, /^[0-9a-f]{32}$/);
  t.same(saved.nodes, { n1: { revision: 2 }, n2: { revision: 2 } });
  t.same(saved.grants.map((g: { id: string; node_id: string }) => [g.id, g.node_id]), [['g1', 'n1'], ['g2', 'n1']]);
  const before = (await request(first.url, 'GET', '/v1/grants')).body;
  await first.stop();
  firstStopped = true;

  const second = await start(t, {}, file);
  t.same((await request(second.url, 'GET', '/v1/grants')).body, before, 'the same grants');
  t.equal((await gatewayView(second, 'n1')).revision, 2);
  t.equal(await gatewayView(second, 'n2'), undefined, 'a node without grants that never connected is not listed');
  const gw = await FakeGateway.connect(second.gatewayUrl);
  t.teardown(() => gw.ws.terminate());
  const { welcome, snapshot } = await gw.join('n2');
  t.equal(welcome.epoch, saved.epoch, 'the same epoch');
  t.equal(welcome.revision, 2, "n2's revision survives although it holds no grant");
  t.same(snapshot.grants, []);
  t.equal((await request(second.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g4', share: 's4', path: 's4', node_id: 'n2' }) })).status, 201);
  const upsert = await gw.next('upsert');
  t.equal(upsert.revision, 3, 'revisions continue from the file');
});

t.test('a state file that is not usable refuses to start', async (t) => {
  const dir = t.testdir({
    'garbage.json': '{"format": 1, "epoch": ',
    'array.json': '[]',
    'format.json': JSON.stringify({ format: 2, epoch: 'e', nodes: {}, grants: [] }),
    'epoch.json': JSON.stringify({ format: 1, epoch: '', nodes: {}, grants: [] }),
    'revision.json': JSON.stringify({ format: 1, epoch: 'e', nodes: { n1: { revision: -1 } }, grants: [] }),
    'guest.json': JSON.stringify({
      format: 1, epoch: 'e', nodes: { n1: { revision: 1 } },
      grants: [{ ...grantDoc(), guest: { tcp: 'nowhere' } }],
    }),
    'node.json': JSON.stringify({ format: 1, epoch: 'e', nodes: {}, grants: [grantDoc()] }),
    'dup.json': JSON.stringify({ format: 1, epoch: 'e', nodes: { n1: { revision: 2 } }, grants: [grantDoc(), grantDoc({ node_id: 'n1' })] }),
    'conflict.json': JSON.stringify({
      format: 1, epoch: 'e', nodes: { n1: { revision: 2 } },
      grants: [grantDoc(), grantDoc({ id: 'g2', path: 'other', guest: { tcp: '10.0.0.9' } })],
    }),
    'extra.json': JSON.stringify({ format: 1, epoch: 'e', nodes: {}, grants: [], more: true }),
  });
  const expected: Record<string, RegExp> = {
    'garbage.json': /is not JSON/,
    'array.json': /\(top level\): must be a JSON object/,
    'format.json': /format: must be 1/,
    'epoch.json': /epoch: must be a non-empty string/,
    'revision.json': /nodes\.n1\.revision: must be an integer >= 0/,
    'guest.json': /grants\[0\]\.guest\.tcp: nowhere is not an IP address/,
    'node.json': /grants\[0\]\.node_id: node n1 has no entry in nodes/,
    'dup.json': /grants\[1\]\.id: grant g1 is given twice/,
    'conflict.json': /grants of node n1: GRANT_SHARE_CONFLICT/,
    'extra.json': /more: is not a known field/,
  };
  for (const [name, message] of Object.entries(expected)) {
    const file = path.join(dir, name);
    const text = readFileSync(file, 'utf8');
    await t.rejects(startController({ host: '127.0.0.1', port: 0, stateFile: file }), { message }, name);
    await startController({ host: '127.0.0.1', port: 0, stateFile: file }).then(
      (c) => c.stop().then(() => t.fail(`${name}: started`)),
      (error: Error) => t.ok(error.message.includes(file), `${name}: the message names the file (${error.message})`),
    );
    t.equal(readFileSync(file, 'utf8'), text, `${name}: left as it was`);
  }
});

t.test('a state file that cannot be written fails the request and changes nothing', async (t) => {
  const dir = path.join(t.testdir(), 'state');
  const file = path.join(dir, 'state.json');
  const c = await start(t, {}, file);
  t.equal((await request(c.url, 'POST', '/v1/grants', { body: grantDoc() })).status, 201);
  // No directory for the temporary file (works as root too, unlike permissions): the write fails.
  rmSync(dir, { recursive: true });
  const r = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g2', share: 's2', path: 's2' }) });
  t.equal(r.status, 500);
  t.match(r.body.error, /^internal error: nothing was changed/);
  t.ok(c.logs.some((l) => l.level === 50 && JSON.stringify(l.err).includes('ENOENT')), 'the cause is logged');
  t.equal((await request(c.url, 'GET', '/v1/grants/g2')).status, 404, 'not visible');
  t.equal((await gatewayView(c, 'n1')).revision, 1, 'no revision spent');
  t.equal((await request(c.url, 'DELETE', '/v1/grants/g1')).status, 500, 'a delete fails the same way');
  t.equal((await request(c.url, 'GET', '/v1/grants/g1')).status, 200, '... and keeps the grant');
  mkdirSync(dir);
  t.equal((await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ id: 'g2', share: 's2', path: 's2' }) })).status, 201, 'works again');
  t.equal((await gatewayView(c, 'n1')).revision, 2);
  t.same(JSON.parse(readFileSync(file, 'utf8')).grants.map((g: { id: string }) => g.id), ['g1', 'g2']);
});

/** Sends `text` on a fresh TCP connection; resolves with everything the server answered before closing. */
function rawExchange(port: number, text: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(Buffer.concat(chunks).toString('latin1'))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined); // a reset after the answer still leaves the answer
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.write(text);
  });
}

t.test('a request line whose URL does not parse: 400, and the controller lives on', async (t) => {
  const c = await start(t, { token: 'tok' });
  const upgrade = await rawExchange(
    c.port,
    'GET http://[/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  t.match(upgrade, /^HTTP\/1\.1 400 /, `a websocket upgrade: ${upgrade.split('\r\n')[0]}`);
  t.match(upgrade, /"error":"url: /, 'the body names the URL');
  t.equal((await request(c.url, 'GET', '/healthz')).status, 200, 'still serving after the upgrade');

  const plain = await rawExchange(c.port, 'GET http://[/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  t.match(plain, /^HTTP\/1\.1 400 /, `a plain request: ${plain.split('\r\n')[0]}`);
  t.match(plain, /"error":"url: /);
  t.equal((await request(c.url, 'GET', '/healthz')).status, 200, 'still serving after the plain request');
  t.notOk(c.logs.some((l) => (l.level as number) >= 50), 'nothing logged as an error');
});
