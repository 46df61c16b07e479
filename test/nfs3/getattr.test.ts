import t from 'tap';
import { getattr } from '../../src/nfs3/getattr.js';
import { lookup } from '../../src/nfs3/lookup.js';
import { Nfs3Status } from '../../src/nfs3/types.js';
import { ATTR, DIR_ATTR, FH, FH2, Bytes, fakeFs, fattrBytes, makeCall, newReply, postOpAttrBytes } from './fixtures/helpers.js';

t.test('GETATTR OK: status and fattr3, caller built from the call', async (t) => {
  const { fs, calls } = fakeFs({ getattr: () => ({ status: Nfs3Status.NFS3_OK, attr: ATTR }) });
  const reply = newReply();
  const out = await getattr(fs)(makeCall(new Bytes().opaque(FH).get()), reply);
  t.equal(out, undefined);
  t.same(reply.result(), new Bytes().u32(0).raw(fattrBytes(ATTR)).get());
  t.equal(calls.length, 1);
  t.same(calls[0]!.args, [FH]);
  t.equal(calls[0]!.caller.identity, 'tcp:10.0.0.5');
  t.equal(calls[0]!.caller.flavor, 1);
  t.equal(calls[0]!.caller.authSys?.uid, 1000);
});

t.test('GETATTR error: status only (default: void)', async (t) => {
  const { fs } = fakeFs({ getattr: () => ({ status: Nfs3Status.NFS3ERR_STALE, attr: ATTR }) });
  const reply = newReply();
  await getattr(fs)(makeCall(new Bytes().opaque(FH).get()), reply);
  t.same(reply.result(), new Bytes().u32(70).get());
});

t.test('LOOKUP NOENT: status and dir_attributes', async (t) => {
  const { fs, calls } = fakeFs({
    lookup: () => ({ status: Nfs3Status.NFS3ERR_NOENT, objAttr: null, dirAttr: DIR_ATTR }),
  });
  const reply = newReply();
  await lookup(fs)(makeCall(new Bytes().opaque(FH).opaque('missing').get()), reply);
  t.same(reply.result(), new Bytes().u32(2).u32(1).raw(fattrBytes(DIR_ATTR)).get());
  t.same(calls[0]!.args, [FH, Buffer.from('missing')]);
});

t.test('LOOKUP OK: handle, obj attributes, dir attributes', async (t) => {
  const { fs } = fakeFs({
    lookup: () => ({ status: Nfs3Status.NFS3_OK, handle: FH2, objAttr: ATTR, dirAttr: null }),
  });
  const reply = newReply();
  await lookup(fs)(makeCall(new Bytes().opaque(FH).opaque('a').get()), reply);
  t.same(reply.result(), new Bytes().u32(0).opaque(FH2).raw(postOpAttrBytes(ATTR)).u32(0).get());
});
