import t from 'tap';
import { XdrReader, XdrWriter, XdrError } from '../../src/rpc/xdr.js';

t.test('uint32 round trip and short read', async (t) => {
  const w = new XdrWriter(2);
  w.uint32(0xdeadbeef).uint64(2n ** 63n + 5n).string('abc');
  const r = new XdrReader(w.result());
  t.equal(r.uint32(), 0xdeadbeef);
  t.equal(r.uint64(), 2n ** 63n + 5n);
  t.equal(r.string(10), 'abc');
  t.throws(() => r.uint32(), { code: 'XDR_SHORT' });
  t.ok(XdrError);
});
