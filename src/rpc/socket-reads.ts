// Reads of a net.Socket into buffers we choose (Node's `onread` socket option), instead of a new
// 64 KiB buffer per read handed out as 'data'.
//
// Why: under 1 MiB WRITEs, the main thread's profile was a third copies: the kernel's copy into
// each fresh 64 KiB chunk, then ours gathering the chunks into the record. With onread, a read
// lands where RecordReader.readTarget() says: straight into the rest of a large record's own
// buffer (one copy, by the kernel), or else into one scratch buffer shared by every connection,
// from which the record layer copies what it keeps (small records, at most a chunk's worth).
// Sharing the scratch is safe because a read callback runs to completion on the main thread before
// any other socket's read, and nothing is left pointing into it afterwards (pushReused).

import type net from 'node:net';

/** Large enough that a burst of small calls arrives in one read. */
const SCRATCH_SIZE = 64 * 1024;
let scratch: Buffer | undefined;

/** The scratch buffer every connection reads small records into (made on first use). */
export function sharedScratch(): Buffer {
  scratch ??= Buffer.allocUnsafeSlow(SCRATCH_SIZE);
  return scratch;
}

/** What a connection does with the reads of its socket. */
export interface ReadConsumer {
  /** Where the next read goes: sharedScratch() or a buffer of the consumer's. */
  nextBuffer(): Buffer;
  /** `bytes` bytes were read into `buffer` (the last nextBuffer()). */
  onRead(bytes: number, buffer: Buffer): void;
}

/**
 * The `onread` of one socket, made before the socket (the option is taken only by its constructor)
 * and attached to its connection once that exists. Reads before that go to the scratch and are
 * kept as copies until attach().
 */
export class SocketReads {
  private consumer: ReadConsumer | null = null;
  private early: Buffer[] = [];

  /** For `new net.Socket({ handle, onread })`. */
  readonly onread: NonNullable<net.OnReadOpts> = {
    buffer: () => (this.consumer === null ? sharedScratch() : this.consumer.nextBuffer()),
    callback: (bytes: number, buffer: Uint8Array) => {
      if (this.consumer === null) {
        this.early.push(Buffer.from(buffer.subarray(0, bytes)));
        return true;
      }
      this.consumer.onRead(bytes, buffer as Buffer);
      return true;
    },
  };

  attach(consumer: ReadConsumer): void {
    this.consumer = consumer;
    const early = this.early;
    this.early = [];
    for (const chunk of early) {
      for (let at = 0; at < chunk.length; ) {
        const target = consumer.nextBuffer();
        const bytes = chunk.copy(target, 0, at, at + target.length);
        consumer.onRead(bytes, target);
        at += bytes;
      }
    }
  }
}
