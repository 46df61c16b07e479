// Codecs shared by the MOUNT procedures (RFC 1813 section 5.1).
import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import { MNTNAMLEN, MNTPATHLEN } from './types.js';

/**
 * dirpath: string<MNTPATHLEN>. Longer is not a valid dirpath: garbage. Decoded as latin1, one
 * character per byte, so a directory whose name is not UTF-8 keeps its exact bytes.
 */
export function decodeDirpath(r: XdrReader): string {
  return r.stringBytes(MNTPATHLEN).toString('latin1');
}

/** name: string<MNTNAMLEN>, cut to the limit so the reply stays valid XDR for strict decoders. */
export function encodeName(w: XdrWriter, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  w.opaque(bytes.length > MNTNAMLEN ? bytes.subarray(0, MNTNAMLEN) : bytes);
}

/** A dirpath as decoded by decodeDirpath (latin1: its original bytes). */
export function encodeDirpath(w: XdrWriter, value: string): void {
  const bytes = Buffer.from(value, 'latin1');
  w.opaque(bytes.length > MNTPATHLEN ? bytes.subarray(0, MNTPATHLEN) : bytes);
}
