import t from 'tap';
import {
  decodeAuthSys,
  decodeCall,
  encodeAcceptedReply,
  encodeAuthError,
  encodeProgMismatch,
  encodeRpcMismatch,
  RecentCredentials,
  type DecodedCall,
} from '../../src/rpc/message.js';
import { XdrWriter } from '../../src/rpc/xdr.js';
import { AcceptStat, AuthFlavor, AuthStat } from '../../src/rpc/types.js';
import { auth, authSys, authSysBody, call, opaque, u32, AUTH_NONE } from '../helpers/rpc-bytes.js';

const sysCred = authSys({ stamp: 7, machine: 'guest-1', uid: 1000, gid: 100, gids: [100, 4, 27] });
const args = u32(0xaaaa, 0xbbbb);
const sysCall = call({ xid: 0x1234, prog: 100003, vers: 3, proc: 1, cred: sysCred, args });

t.test('AUTH_NONE call', async (t) => {
  const msg = call({ xid: 42, prog: 100005, vers: 3, proc: 0, args });
  const d = decodeCall(msg);
  t.match(d, { kind: 'call', xid: 42, prog: 100005, vers: 3, proc: 0, flavor: AuthFlavor.AUTH_NONE, authSys: null });
  if (d.kind !== 'call') return;
  t.equal(d.argsOffset, 40); // 6 words + 2 empty opaque_auths
  t.same(msg.subarray(d.argsOffset), args);
});

t.test('AUTH_SYS call', async (t) => {
  const d = decodeCall(sysCall);
  t.match(d, { kind: 'call', xid: 0x1234, prog: 100003, vers: 3, proc: 1, flavor: AuthFlavor.AUTH_SYS });
  if (d.kind !== 'call') return;
  t.same(d.authSys, { stamp: 7, machineName: 'guest-1', uid: 1000, gid: 100, gids: [100, 4, 27] });
  t.same(sysCall.subarray(d.argsOffset), args);
});

t.test("a connection's recent credentials are decoded once, a changed one anew", async (t) => {
  const last = new RecentCredentials();
  const callWith = (uid: number, xid: number) =>
    call({ xid, prog: 100003, vers: 3, proc: 1, cred: authSys({ stamp: 7, machine: 'guest-1', uid, gid: 100, gids: [100, 4] }), args });
  const first = decodeCall(callWith(1000, 1), last);
  const second = decodeCall(callWith(1000, 2), last);
  if (first.kind !== 'call' || second.kind !== 'call') return t.fail('not decoded as calls');
  t.equal(second.authSys, first.authSys, 'the same bytes: the same decoded object');
  t.equal(second.xid, 2, 'the header itself is still decoded per call');
  t.ok(Object.isFrozen(first.authSys) && Object.isFrozen(first.authSys?.gids), 'shared, so frozen');

  // Same length, one byte different (uid 1000 -> 1001): decoded anew, never the cached answer.
  const changed = decodeCall(callWith(1001, 3), last);
  if (changed.kind !== 'call') return t.fail('not decoded as a call');
  t.not(changed.authSys, first.authSys);
  t.match(changed.authSys, { uid: 1001, gid: 100, gids: [100, 4] });

  // The cache holds a copy: the record's buffer reused for another call does not change it.
  const record = callWith(2000, 4);
  const fromRecord = decodeCall(record, last);
  record.fill(0xff);
  const again = decodeCall(callWith(2000, 5), last);
  if (fromRecord.kind !== 'call' || again.kind !== 'call') return t.fail('not decoded as calls');
  t.equal(again.authSys, fromRecord.authSys);
  t.match(again.authSys, { uid: 2000 });

  // A malformed credential is refused whole and cached never: the good one before it still serves.
  const bad = Buffer.concat([authSysBody({ uid: 0, gid: 0 }), u32(0)]);
  const refused = decodeCall(call({ xid: 6, prog: 100003, vers: 3, proc: 1, cred: auth(AuthFlavor.AUTH_SYS, bad), args }), last);
  t.match(refused, { kind: 'auth-error', stat: AuthStat.AUTH_BADCRED });
  const after = decodeCall(callWith(2000, 7), last);
  t.equal(after.kind === 'call' && after.authSys, fromRecord.authSys);

  // Users of one guest interleave on its connection: each of the last four keeps its decoding.
  const back = decodeCall(callWith(1000, 8), last);
  t.equal(back.kind === 'call' && back.authSys, first.authSys, 'uid 1000 again, two credentials later');
  for (const uid of [3000, 3001, 3002]) decodeCall(callWith(uid, 9), last);
  const evicted = decodeCall(callWith(1001, 10), last);
  if (evicted.kind !== 'call') return t.fail('not decoded as a call');
  t.not(evicted.authSys, changed.authSys, 'a fifth credential pushed uid 1001 out: decoded anew');
  t.match(evicted.authSys, { uid: 1001 });
});

t.test('AUTH_SYS bounds', async (t) => {
  t.match(decodeAuthSys(authSysBody({ machine: 'x'.repeat(255), uid: 0, gid: 0, gids: new Array(16).fill(1) })), {
    uid: 0,
    gids: new Array(16).fill(1),
  });
  t.equal(decodeAuthSys(authSysBody({ machine: 'x'.repeat(256), uid: 0, gid: 0 })), null, 'machinename<255>');
  t.equal(decodeAuthSys(authSysBody({ uid: 0, gid: 0, gids: new Array(17).fill(1) })), null, 'gids<16>');
  t.equal(decodeAuthSys(Buffer.concat([authSysBody({ uid: 0, gid: 0 }), u32(0)])), null, 'trailing bytes');
  t.equal(decodeAuthSys(u32(0, 0xffffffff, 0, 0, 0)), null, 'huge name length');
  t.equal(decodeAuthSys(u32(0, 0, 0, 0, 0xffffffff)), null, 'huge gid count');
  const body = authSysBody({ uid: 1, gid: 2, gids: [3] });
  for (let cut = 0; cut < body.length; cut++) t.equal(decodeAuthSys(body.subarray(0, cut)), null);
});

function isCleanResult(d: DecodedCall): boolean {
  return ['call', 'drop', 'rpc-mismatch', 'auth-error'].includes(d.kind);
}

t.test('a call truncated at every byte offset gives a clean result', async (t) => {
  const credEnd = 24 + sysCred.length;
  const verfEnd = credEnd + 8;
  for (let cut = 0; cut <= sysCall.length; cut++) {
    let d: DecodedCall;
    try {
      d = decodeCall(sysCall.subarray(0, cut));
    } catch (err) {
      t.fail(`threw at ${cut}: ${String(err)}`);
      continue;
    }
    if (!isCleanResult(d)) t.fail(`odd result at ${cut}`);
    if (cut < 24) {
      t.same(d, { kind: 'drop', reason: 'short' }, `cut ${cut}: dropped`);
    } else if (cut < credEnd) {
      t.match(d, { kind: 'auth-error', xid: 0x1234, stat: AuthStat.AUTH_BADCRED }, `cut ${cut}: bad cred`);
    } else if (cut < verfEnd) {
      t.match(d, { kind: 'auth-error', xid: 0x1234, stat: AuthStat.AUTH_BADVERF }, `cut ${cut}: bad verf`);
    } else {
      t.match(d, { kind: 'call', xid: 0x1234, argsOffset: verfEnd }, `cut ${cut}: parses, args short`);
    }
  }
});

t.test('random garbage never throws', async (t) => {
  let seed = 12345;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(sysCall);
    for (let j = 0; j < 3; j++) b[rand() % b.length] = rand() & 0xff;
    const d = decodeCall(b.subarray(0, rand() % (b.length + 1)));
    if (!isCleanResult(d)) t.fail('odd result');
  }
  t.pass('2000 mutated calls decoded');
});

t.test('rpcvers other than 2 is RPC_MISMATCH, whatever follows', async (t) => {
  t.same(decodeCall(call({ xid: 9, prog: 1, vers: 1, proc: 0, rpcvers: 3 })), { kind: 'rpc-mismatch', xid: 9 });
  t.same(decodeCall(u32(9, 0, 1)), { kind: 'rpc-mismatch', xid: 9 });
});

t.test('a REPLY or an unknown msg_type is dropped', async (t) => {
  t.same(decodeCall(u32(5, 1, 0, 0, 0, 0, 0)), { kind: 'drop', reason: 'reply' });
  t.same(decodeCall(u32(5, 2, 2, 0, 0, 0)), { kind: 'drop', reason: 'bad-msg-type' });
  t.same(decodeCall(u32(5)), { kind: 'drop', reason: 'short' });
});

t.test('credential and verifier failures', async (t) => {
  const base = { xid: 3, prog: 100003, vers: 3, proc: 0 };
  const denied = (stat: AuthStat) => ({ kind: 'auth-error', xid: 3, prog: 100003, vers: 3, proc: 0, stat });
  t.same(decodeCall(call({ ...base, cred: auth(1, Buffer.alloc(404)) })), denied(AuthStat.AUTH_BADCRED), 'cred > 400');
  t.same(decodeCall(call({ ...base, cred: u32(1, 0xfffffff0) })), denied(AuthStat.AUTH_BADCRED), 'huge cred length');
  t.same(
    decodeCall(call({ ...base, cred: auth(1, authSysBody({ uid: 0, gid: 0, gids: new Array(17).fill(0) })) })),
    denied(AuthStat.AUTH_BADCRED),
    '17 gids',
  );
  t.same(decodeCall(call({ ...base, cred: auth(1, Buffer.alloc(8)) })), denied(AuthStat.AUTH_BADCRED), 'short authsys');
  t.same(decodeCall(call({ ...base, cred: auth(0, Buffer.alloc(4)) })), denied(AuthStat.AUTH_BADCRED), 'AUTH_NONE with a body');
  t.same(decodeCall(call({ ...base, cred: auth(6, Buffer.alloc(20)) })), denied(AuthStat.AUTH_BADCRED), 'RPCSEC_GSS');
  t.same(decodeCall(call({ ...base, cred: auth(3, Buffer.alloc(20)) })), denied(AuthStat.AUTH_BADCRED), 'AUTH_DH');
  t.same(decodeCall(call({ ...base, cred: auth(7) })), denied(AuthStat.AUTH_BADCRED), 'AUTH_TLS probe');
  t.same(decodeCall(call({ ...base, cred: auth(2, Buffer.alloc(8)) })), denied(AuthStat.AUTH_REJECTEDCRED), 'AUTH_SHORT');
  t.same(decodeCall(call({ ...base, verf: sysCred })), denied(AuthStat.AUTH_BADVERF), 'AUTH_SYS verifier');
  t.same(decodeCall(call({ ...base, verf: auth(0, Buffer.alloc(4)) })), denied(AuthStat.AUTH_BADVERF), 'non-empty verifier');
  t.same(decodeCall(call({ ...base, verf: u32(0, 401) })), denied(AuthStat.AUTH_BADVERF), 'verifier > 400');
  t.match(decodeCall(call({ ...base, cred: auth(1, authSysBody({ uid: 0, gid: 0 })), verf: AUTH_NONE })), { kind: 'call' });
});

function encoded(fn: (w: XdrWriter) => void): Buffer {
  const w = new XdrWriter(8);
  fn(w);
  return w.result();
}

t.test('reply headers, compared with hand-built bytes', async (t) => {
  t.same(encoded((w) => encodeAcceptedReply(w, 0x55, AcceptStat.SUCCESS)), u32(0x55, 1, 0, 0, 0, 0));
  t.equal(new XdrWriter().uint32(0).offset, 4);
  const w = new XdrWriter();
  w.reserve(4);
  t.equal(encodeAcceptedReply(w, 1, AcceptStat.SUCCESS), 24, 'offset of accept_stat');
  t.same(encoded((w) => encodeAcceptedReply(w, 0x55, AcceptStat.GARBAGE_ARGS)), u32(0x55, 1, 0, 0, 0, 4));
  t.same(encoded((w) => encodeProgMismatch(w, 0x55, 2, 4)), u32(0x55, 1, 0, 0, 0, 2, 2, 4));
  t.same(encoded((w) => encodeRpcMismatch(w, 0x55)), u32(0x55, 1, 1, 0, 2, 2));
  t.same(encoded((w) => encodeAuthError(w, 0x55, AuthStat.AUTH_TOOWEAK)), u32(0x55, 1, 1, 1, 5));
  t.same(opaque('ab'), Buffer.from([0, 0, 0, 2, 0x61, 0x62, 0, 0]), 'helper sanity');
});
