// XDR (RFC 4506) on Buffers in place: the reader hands out subarrays, never copies; the
// writer grows one buffer and lets callers reserve room to fill later (record mark, READ data).

import { LARGE_BUFFER_MIN, largeBuffers } from './buffers.js';

/** Thrown by XdrReader on a short or malformed message; the dispatcher turns it into GARBAGE_ARGS. */
export class XdrError extends Error {
  readonly code: 'XDR_SHORT' | 'XDR_TOO_LONG' | 'XDR_BAD_VALUE';
  constructor(code: 'XDR_SHORT' | 'XDR_TOO_LONG' | 'XDR_BAD_VALUE', message: string) {
    super(message);
    this.code = code;
  }
}

const TWO_32 = 0x1_0000_0000;

/** Pad length to the 4-byte XDR unit (RFC 4506 section 3). */
export function xdrPad(length: number): number {
  return (4 - (length & 3)) & 3;
}

export class XdrReader {
  offset: number;
  readonly end: number;

  constructor(readonly buffer: Buffer, offset = 0, end = buffer.length) {
    this.offset = offset;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  private need(bytes: number): number {
    const at = this.offset;
    if (bytes > this.end - at) throw new XdrError('XDR_SHORT', `need ${bytes} bytes at ${at}, have ${this.end - at}`);
    this.offset = at + bytes;
    return at;
  }

  uint32(): number {
    return this.buffer.readUInt32BE(this.need(4));
  }

  int32(): number {
    return this.buffer.readInt32BE(this.need(4));
  }

  /** RFC 4506 section 4.4: booleans are 0 or 1; anything else is garbage. */
  bool(): boolean {
    const v = this.uint32();
    if (v > 1) throw new XdrError('XDR_BAD_VALUE', `bool ${v}`);
    return v === 1;
  }

  uint64(): bigint {
    return this.buffer.readBigUInt64BE(this.need(8));
  }

  /** A uint64 as a double: exact up to 2^53; callers that need exactness beyond check > MAX_SAFE_INTEGER. */
  uint64AsNumber(): number {
    const at = this.need(8);
    return this.buffer.readUInt32BE(at) * TWO_32 + this.buffer.readUInt32BE(at + 4);
  }

  /** Fixed-length opaque (RFC 4506 section 4.9): a view, not a copy. */
  opaqueFixed(length: number): Buffer {
    const at = this.need(length + xdrPad(length));
    return this.buffer.subarray(at, at + length);
  }

  /** Variable-length opaque (RFC 4506 section 4.10) of at most maxLength bytes: a view, not a copy. */
  opaque(maxLength: number): Buffer {
    const length = this.uint32();
    if (length > maxLength) throw new XdrError('XDR_TOO_LONG', `opaque of ${length} bytes, limit ${maxLength}`);
    return this.opaqueFixed(length);
  }

  /** XDR string as raw bytes (file names are bytes, not UTF-8, on Linux). */
  stringBytes(maxLength: number): Buffer {
    return this.opaque(maxLength);
  }

  string(maxLength: number): string {
    return this.opaque(maxLength).toString('utf8');
  }

  skip(bytes: number): void {
    this.need(bytes);
  }
}

export class XdrWriter {
  buffer: Buffer;
  offset: number;
  /**
   * Bytes the reply ends with that are not in `buffer` (a spliced READ's data, rpc/types.ts
   * ReplyTail): set by a handler once its encoding is complete; the dispatcher owns it from then.
   */
  tail: { pipeFd: number; count: number; pad: number } | null = null;

  constructor(initialSize = 512) {
    this.buffer = Buffer.allocUnsafe(initialSize);
    this.offset = 0;
  }

  /** Make room for `bytes` more bytes; returns the offset where they start. */
  ensure(bytes: number): number {
    const need = this.offset + bytes;
    if (need > this.buffer.length) {
      let size = this.buffer.length * 2;
      while (size < need) size *= 2;
      // Large replies (READ data) come from the shared pool; the connection hands them back.
      const grown = (need >= LARGE_BUFFER_MIN ? largeBuffers.take(need) : undefined) ?? Buffer.allocUnsafe(size);
      this.buffer.copy(grown, 0, 0, this.offset);
      this.buffer = grown;
    }
    return this.offset;
  }

  /** Reserve `bytes` bytes to be filled later through `buffer` at the returned offset. */
  reserve(bytes: number): number {
    const at = this.ensure(bytes);
    this.offset = at + bytes;
    return at;
  }

  uint32(value: number): this {
    const at = this.ensure(4);
    this.buffer.writeUInt32BE(value >>> 0, at);
    this.offset = at + 4;
    return this;
  }

  int32(value: number): this {
    const at = this.ensure(4);
    this.buffer.writeInt32BE(value | 0, at);
    this.offset = at + 4;
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  /** uint64 from a bigint, or from a non-negative integral number (exact up to 2^53). */
  uint64(value: bigint | number): this {
    const at = this.ensure(8);
    if (typeof value === 'bigint') {
      this.buffer.writeBigUInt64BE(BigInt.asUintN(64, value), at);
    } else {
      const hi = Math.floor(value / TWO_32);
      this.buffer.writeUInt32BE(hi >>> 0, at);
      this.buffer.writeUInt32BE((value - hi * TWO_32) >>> 0, at + 4);
    }
    this.offset = at + 8;
    return this;
  }

  opaqueFixed(data: Uint8Array): this {
    const pad = xdrPad(data.length);
    const at = this.ensure(data.length + pad);
    this.buffer.set(data, at);
    this.buffer.fill(0, at + data.length, at + data.length + pad);
    this.offset = at + data.length + pad;
    return this;
  }

  opaque(data: Uint8Array): this {
    this.uint32(data.length);
    return this.opaqueFixed(data);
  }

  string(value: string | Uint8Array): this {
    return this.opaque(typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
  }

  /**
   * Start a variable-length opaque whose bytes the caller writes in place (READ data straight
   * from pread into the reply). Reserve `maxLength`; call the returned finish(actual) once filled.
   */
  opaqueInPlace(maxLength: number): { buffer: Buffer; offset: number; finish(actual: number): void } {
    const lengthAt = this.reserve(4);
    const dataAt = this.ensure(maxLength + 3);
    const buffer = this.buffer;
    return {
      buffer,
      offset: dataAt,
      finish: (actual: number) => {
        if (actual > maxLength) throw new RangeError('opaqueInPlace: wrote more than reserved');
        buffer.writeUInt32BE(actual, lengthAt);
        const pad = xdrPad(actual);
        buffer.fill(0, dataAt + actual, dataAt + actual + pad);
        this.offset = dataAt + actual + pad;
      },
    };
  }

  /** The bytes written so far (a view). */
  result(): Buffer {
    return this.buffer.subarray(0, this.offset);
  }
}
