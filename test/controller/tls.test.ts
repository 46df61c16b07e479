// TLS: https/wss with a throwaway CA made by openssl; with a client CA, a gateway needs a
// certificate whose subject CN is its node id.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { FakeGateway, gateway, grantDoc, request, start } from './helpers/controller.js';

interface Pems {
  ca: string;
  serverCert: string;
  serverKey: string;
  client: (cn: string) => { cert: string; key: string };
  /** a client certificate signed by another CA */
  stranger: { cert: string; key: string };
}

function makeCerts(dir: string): Pems {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const makeCa = (name: string) => ssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
  const issue = (ca: string, name: string, cn: string, ext: string) => {
    writeFileSync(path.join(dir, `${name}.ext`), `${ext}\nbasicConstraints=CA:FALSE\n`);
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    return { cert: readFileSync(path.join(dir, `${name}.crt`), 'utf8'), key: readFileSync(path.join(dir, `${name}.key`), 'utf8') };
  };
  makeCa('test-ca');
  makeCa('other-ca');
  const server = issue('test-ca', 'server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth');
  const clients = new Map<string, { cert: string; key: string }>();
  return {
    ca: readFileSync(path.join(dir, 'test-ca.crt'), 'utf8'),
    serverCert: server.cert,
    serverKey: server.key,
    client: (cn) => {
      if (!clients.has(cn)) clients.set(cn, issue('test-ca', `client-${cn}`, cn, 'extendedKeyUsage=clientAuth'));
      return clients.get(cn)!;
    },
    stranger: issue('other-ca', 'stranger', 'node-a', 'extendedKeyUsage=clientAuth'),
  };
}

const pems = makeCerts(t.testdir());

t.test('client certificates: the CN must be the node id', async (t) => {
  const c = await start(t, { tls: { cert: pems.serverCert, key: pems.serverKey, clientCa: pems.ca } });
  t.match(c.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  t.match(c.gatewayUrl, /^wss:\/\/127\.0\.0\.1:\d+\/v1\/gateway$/);
  const nodeA = pems.client('node-a');
  const created = await request(c.url, 'POST', '/v1/grants', { body: grantDoc({ node_id: 'node-a' }), tls: { ca: pems.ca, ...nodeA } });
  t.equal(created.status, 201, 'the API over https with a client certificate');

  const good = await gateway(t, c, { ca: pems.ca, ...nodeA });
  const { welcome, snapshot } = await good.join('node-a');
  t.equal(welcome.revision, 1, 'matching CN: accepted');
  t.same(snapshot.grants.map((g) => g.id), ['g1']);

  const liar = await gateway(t, c, { ca: pems.ca, ...nodeA });
  liar.hello('node-b');
  const error = await liar.next('error');
  t.equal(error.code, 'NODE_MISMATCH');
  t.match(error.message, /node-b is not the client certificate's subject CN "node-a"/);
  t.equal((await liar.closed).code, 1008);
  t.equal(good.ws.readyState, WebSocket.OPEN, 'the impostor did not replace the real session');

  // TLS 1.3 reports a refused client certificate as an alert after the handshake, or as a reset.
  const refusal = /certificate|unknown ca|socket hang up|ECONNRESET|EPIPE/i;
  const failure = (p: Promise<unknown>) => p.then(() => new Error('accepted'), (e: Error) => e);
  const noCert = await failure(FakeGateway.connect(c.gatewayUrl, { ca: pems.ca }));
  t.match(noCert.message, refusal, `no client certificate: refused (${noCert.message})`);
  const otherCa = await failure(FakeGateway.connect(c.gatewayUrl, { ca: pems.ca, ...pems.stranger }));
  t.match(otherCa.message, refusal, `a certificate of another CA: refused (${otherCa.message})`);
  const api = await failure(request(c.url, 'GET', '/v1/grants', { tls: { ca: pems.ca } }));
  t.match(api.message, refusal, `the API refuses a client without a certificate too (${api.message})`);
});

t.test('TLS with a token and no client certificates', async (t) => {
  const c = await start(t, { token: 'tok', tls: { cert: pems.serverCert, key: pems.serverKey } });
  t.equal((await request(c.url, 'GET', '/v1/grants', { tls: { ca: pems.ca } })).status, 401);
  t.equal((await request(c.url, 'GET', '/v1/grants', { token: 'tok', tls: { ca: pems.ca } })).status, 200);
  await t.rejects(FakeGateway.connect(c.gatewayUrl, { ca: pems.ca }), { message: 'upgrade refused: 401' });
  const gw = await gateway(t, c, { ca: pems.ca, token: 'tok' });
  const { welcome } = await gw.join('any-node');
  t.equal(welcome.revision, 0, 'without a client CA any node id is taken on the token');
  await t.rejects(FakeGateway.connect(c.gatewayUrl.replace('wss:', 'ws:'), { token: 'tok' }), 'plain ws to a TLS port fails');
});
