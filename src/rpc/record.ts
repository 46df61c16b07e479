// RPC record marking over a byte stream (RFC 5531 section 11).
//
// A record is a sequence of fragments; each fragment is a 4-byte header (high bit: last
// fragment; low 31 bits: fragment length) followed by that many bytes. The reader below is an
// explicit state machine in the manner of websockets/ws lib/receiver.js: it is fed chunks as they
// arrive and steps between two states, FRAGMENT_HEADER and FRAGMENT_BODY, consuming exactly what
// each needs. It knows nothing of sockets, so tests drive it byte by byte.
//
// Copies: a record whose bytes arrived in one chunk is handed out as a subarray of that chunk;
// one spread over several chunks or fragments is gathered as views and concatenated once.
// A socket that reads into buffers of our choosing (socket-reads.ts) does better for large records:
// readTarget() points its next read straight at the rest of the record's own buffer, so a 1 MiB
// WRITE is copied once, by the kernel, instead of into 64 KiB chunks and then gathered.

import { LARGE_BUFFER_MIN, largeBuffers } from './buffers.js';

/** Bytes of the record mark in front of every fragment. */
export const RECORD_MARK_SIZE = 4;

/** High bit of the record mark: this fragment is the last of its record. */
export const LAST_FRAGMENT = 0x8000_0000;

/** Largest fragment length a record mark can carry (31 bits). */
export const MAX_FRAGMENT_LENGTH = 0x7fff_ffff;

/** The rest of a record from which a socket reads it straight into its own buffer (readTarget). */
export const DIRECT_READ_MIN = 64 * 1024;

/** A 1 MiB READ/WRITE payload plus generous room for the RPC and NFS headers around it. */
export const DEFAULT_MAX_RECORD_SIZE = 1024 * 1024 + 64 * 1024;

/**
 * Fragments one record may span. Real clients send one fragment (Linux, libnfs) or a few hundred
 * (libtirpc splits at its send buffer size); the cap bounds the views kept per record, which a
 * peer sending one-byte fragments could otherwise multiply by the full record size.
 */
export const DEFAULT_MAX_FRAGMENTS = 4096;

export type RecordErrorCode = 'RPC_RECORD_TOO_LARGE' | 'RPC_RECORD_TOO_MANY_FRAGMENTS';

/**
 * A protocol violation of the record layer. The stream cannot be resynchronised after it, so the
 * connection that produced it is closed (only that one).
 */
export class RecordError extends Error {
  readonly code: RecordErrorCode;
  constructor(code: RecordErrorCode, message: string) {
    super(message);
    this.name = 'RecordError';
    this.code = code;
  }
}

export interface RecordReaderOptions {
  /** Largest record accepted, in bytes (sum of its fragments). Default DEFAULT_MAX_RECORD_SIZE. */
  maxRecordSize?: number;
  /** Most fragments one record may span. Default DEFAULT_MAX_FRAGMENTS. */
  maxFragments?: number;
}

const FRAGMENT_HEADER = 0;
const FRAGMENT_BODY = 1;

/**
 * Reassembles records from a byte stream. `push` each chunk; complete records are passed to
 * `onRecord` synchronously, in order. A violation throws RecordError from `push`, and every later
 * `push` throws the same error.
 *
 * Empty records (a last fragment closing a record of 0 bytes in total) are dropped silently: they
 * hold no xid, so there is nothing to answer, and they cost the sender as much as us. Zero-length
 * fragments that are not last are legal and simply skipped.
 */
export class RecordReader {
  readonly maxRecordSize: number;
  readonly maxFragments: number;

  private state = FRAGMENT_HEADER;
  /** A fragment header split across chunks is gathered here. */
  private readonly header = Buffer.alloc(RECORD_MARK_SIZE);
  private headerFill = 0;
  /** Bytes of the current fragment still to come. */
  private fragmentRemaining = 0;
  private lastFragment = false;
  /** Views on the bytes of the record so far, and their total length. */
  private pieces: Buffer[] = [];
  private recordLength = 0;
  /** Announced length of the record so far (all fragment headers seen), checked against the limit. */
  private announced = 0;
  private fragments = 0;
  private failure: RecordError | null = null;
  /** The record being read straight into (readTarget), and how much of it is filled. */
  private direct: Buffer | null = null;
  private directFill = 0;

  constructor(
    private readonly onRecord: (record: Buffer) => void,
    options: RecordReaderOptions = {},
  ) {
    this.maxRecordSize = options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE;
    this.maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS;
  }

  /** Bytes of an incomplete record currently held (header bytes included). */
  get bufferedBytes(): number {
    return this.recordLength + this.headerFill;
  }

  /**
   * Where a socket's next read should go: straight into the record being received when the rest of
   * its last fragment is at least DIRECT_READ_MIN bytes, or whatever its rest once a scratch read
   * already opened the record's buffer (feed) (exactly that rest: the next record's bytes never land
   * in it), else `scratch`. The bytes read into either are reported with filled().
   * Only once DIRECT_READ_MIN bytes of the record (its record mark included) have really arrived:
   * a buffer the size of the record for a 4-byte record mark alone would let a peer make us hold
   * 1 MiB per connection for the price of four bytes.
   */
  readTarget(scratch: Buffer): Buffer {
    let direct = this.direct;
    if (direct === null) {
      if (this.failure !== null || this.state !== FRAGMENT_BODY || !this.lastFragment || this.fragmentRemaining < DIRECT_READ_MIN) return scratch;
      if (!this.arrivedEnough(0)) return scratch;
      direct = this.openDirect();
    }
    return direct.subarray(this.directFill, this.directFill + this.fragmentRemaining);
  }

  /**
   * Whether DIRECT_READ_MIN bytes of the record have arrived with `more` bytes, counting its record
   * mark: a 64 KiB socket read that starts at a record holds 65532 bytes of it.
   */
  private arrivedEnough(more: number): boolean {
    return this.recordLength + more + RECORD_MARK_SIZE >= DIRECT_READ_MIN;
  }

  /** The record's own buffer, with what arrived of it so far, to read the rest of its last fragment into. */
  private openDirect(): Buffer {
    const total = this.recordLength + this.fragmentRemaining;
    const direct = largeBuffers.take(total) ?? Buffer.allocUnsafe(total);
    this.direct = direct;
    this.directFill = putPieces(direct, this.pieces);
    this.pieces = [];
    return direct;
  }

  /**
   * `bytes` bytes were read into `target`, a buffer readTarget() returned: the record's own, or the
   * scratch (read into again once this returns).
   */
  filled(target: Buffer, bytes: number): void {
    if (this.direct !== null && target.buffer === this.direct.buffer) this.filledDirect(bytes);
    else this.pushReused(target.subarray(0, bytes));
  }

  /** `bytes` more bytes of the record arrived in the buffer readTarget() returned. */
  filledDirect(bytes: number): void {
    if (this.direct === null || bytes > this.fragmentRemaining) throw new RangeError('filledDirect: no read target for these bytes');
    this.directFill += bytes;
    this.recordLength += bytes;
    this.fragmentRemaining -= bytes;
    if (this.fragmentRemaining === 0) this.endFragment();
  }

  /** push() of a chunk whose memory is reused once this returns: what is kept of it is copied. */
  pushReused(chunk: Buffer): void {
    // Bytes that went to the scratch while a record is read into its own buffer (a read target
    // chosen before the switch) go where the next read would have put them.
    let at = 0;
    while (this.direct !== null && at < chunk.length) {
      const take = Math.min(this.fragmentRemaining, chunk.length - at);
      chunk.copy(this.direct, this.directFill, at, at + take);
      at += take;
      this.filledDirect(take);
    }
    if (at < chunk.length) this.feed(at === 0 ? chunk : chunk.subarray(at), true);
  }

  /** The connection is gone: a record's own buffer, partly read into, goes back to the pool. */
  discard(): void {
    const direct = this.direct;
    this.direct = null;
    this.pieces = [];
    if (direct !== null) largeBuffers.give(direct);
  }

  push(chunk: Buffer): void {
    this.feed(chunk, false);
  }

  private feed(chunk: Buffer, reused: boolean): void {
    if (this.failure !== null) throw this.failure;
    if (this.direct !== null) throw new RangeError('push: the record is being read into its own buffer (filledDirect)');
    const length = chunk.length;
    let at = 0;
    while (at < length) {
      if (this.state === FRAGMENT_HEADER) {
        let mark: number;
        if (this.headerFill === 0 && length - at >= RECORD_MARK_SIZE) {
          mark = chunk.readUInt32BE(at);
          at += RECORD_MARK_SIZE;
        } else {
          const take = Math.min(RECORD_MARK_SIZE - this.headerFill, length - at);
          chunk.copy(this.header, this.headerFill, at, at + take);
          this.headerFill += take;
          at += take;
          if (this.headerFill < RECORD_MARK_SIZE) return;
          this.headerFill = 0;
          mark = this.header.readUInt32BE(0);
        }
        this.startFragment(mark);
      } else {
        const take = Math.min(this.fragmentRemaining, length - at);
        if (reused && this.lastFragment && take < this.fragmentRemaining && this.arrivedEnough(take)) {
          // The scratch brought DIRECT_READ_MIN bytes of a record with more to come (the first
          // 64 KiB of a large WRITE): they go straight into the record's own buffer, where the rest
          // will be read, not into a copy of their own that is copied again (a 64 KiB allocation
          // per WRITE). The chunk ends here (take < fragmentRemaining).
          chunk.copy(this.openDirect(), this.directFill, at, at + take);
          this.filledDirect(take);
          return;
        }
        // A whole chunk is kept as is; otherwise a view on the part that belongs to this fragment
        // (a copy, when the chunk's memory is about to be read into again).
        const piece = take === length ? chunk : chunk.subarray(at, at + take);
        this.pieces.push(reused ? Buffer.from(piece) : piece);
        this.recordLength += take;
        this.fragmentRemaining -= take;
        at += take;
        if (this.fragmentRemaining === 0) this.endFragment();
      }
    }
  }

  private startFragment(mark: number): void {
    const fragmentLength = mark & MAX_FRAGMENT_LENGTH;
    this.lastFragment = (mark & LAST_FRAGMENT) !== 0;
    this.fragments += 1;
    if (this.announced + fragmentLength > this.maxRecordSize) {
      this.fail(
        'RPC_RECORD_TOO_LARGE',
        `record of at least ${this.announced + fragmentLength} bytes, limit ${this.maxRecordSize}`,
      );
    }
    if (this.fragments > this.maxFragments) {
      this.fail('RPC_RECORD_TOO_MANY_FRAGMENTS', `record of more than ${this.maxFragments} fragments`);
    }
    this.announced += fragmentLength;
    this.fragmentRemaining = fragmentLength;
    if (fragmentLength === 0) {
      this.endFragment();
    } else {
      this.state = FRAGMENT_BODY;
    }
  }

  private endFragment(): void {
    this.state = FRAGMENT_HEADER;
    if (!this.lastFragment) return;
    const pieces = this.pieces;
    const total = this.recordLength;
    const direct = this.direct;
    this.pieces = [];
    this.recordLength = 0;
    this.announced = 0;
    this.fragments = 0;
    this.direct = null;
    this.directFill = 0;
    if (direct !== null) {
      this.onRecord(direct.subarray(0, total));
      return;
    }
    if (total === 0) return; // empty record: dropped (see the class comment)
    this.onRecord(pieces.length === 1 ? pieces[0]! : gather(pieces, total));
  }

  private fail(code: RecordErrorCode, message: string): never {
    this.failure = new RecordError(code, message);
    this.pieces = [];
    this.recordLength = 0;
    this.direct = null;
    throw this.failure;
  }
}

/** One record from its pieces: a large one (a WRITE) into a pooled buffer the connection hands back. */
function gather(pieces: Buffer[], total: number): Buffer {
  const pooled = total >= LARGE_BUFFER_MIN ? largeBuffers.take(total) : undefined;
  if (pooled === undefined) return Buffer.concat(pieces, total);
  putPieces(pooled, pieces);
  return pooled.subarray(0, total);
}

/** The pieces one after another from the start of `target`; how many bytes that is. */
function putPieces(target: Buffer, pieces: readonly Buffer[]): number {
  let at = 0;
  for (const piece of pieces) {
    target.set(piece, at);
    at += piece.length;
  }
  return at;
}

/**
 * Fill in the record mark of a reply built with its first RECORD_MARK_SIZE bytes reserved: one
 * fragment, the last. Returns the same buffer.
 */
export function setRecordMark(reply: Buffer): Buffer {
  const fragmentLength = reply.length - RECORD_MARK_SIZE;
  if (fragmentLength < 0 || fragmentLength > MAX_FRAGMENT_LENGTH) {
    throw new RangeError(`reply of ${reply.length} bytes cannot be one record fragment`);
  }
  reply.writeUInt32BE((LAST_FRAGMENT | fragmentLength) >>> 0, 0);
  return reply;
}
