// One RPC connection over any Duplex (TCP, vsock, UNIX socket): record marking in, dispatch of
// every record concurrently, replies out as soon as each is ready (out of order: RFC 5531 matches
// them by xid), with flow control both ways:
//   - at most maxCallsInFlight calls run at once; reaching it pauses reading the socket, and
//     records already read wait in a queue bounded by one chunk;
//   - when socket.write reports a full buffer, reading stops until 'drain', so a peer that sends
//     calls without reading replies stalls itself instead of filling our memory.
// Records read before a pause wait in a queue (bounded by one chunk) and are started only while
// both conditions allow. Replies finishing in the same loop turn are written under one cork (one writev).

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { RpcDispatcher } from './dispatch.js';
import { RecordError, RecordReader } from './record.js';
import { sharedScratch, type SocketReads } from './socket-reads.js';
import { LARGE_BUFFER_MIN, largeBuffers } from './buffers.js';
import { closePipe, pipeClosed } from './pipes.js';
import { RecentCredentials } from './message.js';
import { peerIdentity, replyTails, type ConnectionInfo, type Peer, type ReplyTail } from './types.js';

export const DEFAULT_MAX_CALLS_IN_FLIGHT = 64;
export const DEFAULT_IDLE_TIMEOUT_MS = 5 * 60 * 1000;
/**
 * Reply bytes queued on the socket before new calls stop being started. The stream's own mark
 * (16 KiB) is below one READ reply, so obeying it would let one 1 MiB reply in flight at a time;
 * 8 MiB keeps a client's 32 MiB of reads in flight moving while still bounding what a peer that
 * does not read can make us hold.
 */
export const DEFAULT_MAX_QUEUED_REPLY_BYTES = 8 * 1024 * 1024;

export interface RpcConnectionOptions {
  /** Largest record accepted; a larger one closes the connection. Default DEFAULT_MAX_RECORD_SIZE. */
  maxRecordSize?: number;
  /** Most fragments per record. Default DEFAULT_MAX_FRAGMENTS. */
  maxFragments?: number;
  /** Calls dispatched at once before reading pauses. Default 64. */
  maxCallsInFlight?: number;
  /**
   * Close after this long with no call in flight and no bytes either way (or with replies waiting
   * on a peer that does not read them); 0 disables. Default 5 min.
   */
  idleTimeoutMs?: number;
  /** The port of the listener the connection arrived on (ConnectionInfo.localPort). */
  localPort?: number;
  /** Reply bytes queued on the socket before reading pauses. Default 8 MiB. */
  maxQueuedReplyBytes?: number;
  /** Sends replies that end in a pipe (ReplyTail); without it no reply may have one (spliceFd is absent). */
  splicer?: ReplySplicer;
  /**
   * The socket was made with this `onread` (socket-reads.ts): its bytes come through it rather than
   * 'data' events, and large records are read straight into their own buffers.
   */
  reads?: SocketReads;
}

/** The native half of a spliced reply (native-bridges/src/splice.cc, FsBridge.sendSpliced). */
export interface ReplySplicer {
  send(socketFd: number, header: Buffer, pipeFd: number, count: number, pad: number): { id: number; done: Promise<{ err: number }> };
  cancel(id: number): void;
}

let nextConnectionId = 1;

export interface RpcConnection {
  on(event: 'close', listener: (reason: string) => void): this;
  once(event: 'close', listener: (reason: string) => void): this;
  off(event: 'close', listener: (reason: string) => void): this;
  emit(event: 'close', reason: string): boolean;
}

/** Emits 'close' (reason) exactly once, whoever closed it. */
export class RpcConnection extends EventEmitter implements ConnectionInfo {
  readonly id: number;
  readonly peer: Peer;
  readonly localPort: number | undefined;

  private readonly socket: Duplex;
  private readonly dispatcher: RpcDispatcher;
  private readonly logger: Logger;
  private readonly reader: RecordReader;
  private readonly maxCallsInFlight: number;
  private readonly idleTimeoutMs: number;
  private readonly maxQueuedReplyBytes: number;
  private readonly splicer: ReplySplicer | undefined;
  /** The socket's descriptor, when replies may end in a pipe (see spliceFd). */
  readonly spliceFd: number | undefined;
  readonly credentials = new RecentCredentials();
  /**
   * Replies not yet handed to the socket, in order: empty except while a spliced reply is being
   * sent (by the native side, straight to the socket) or waits for the socket's queue to empty.
   */
  private readonly output: Buffer[] = [];
  private outputBytes = 0;
  /** The spliced reply being sent now, if any. */
  private splicing: number | null = null;
  /** Waiting for the socket to have written everything before a spliced reply starts. */
  private flushing = false;

  private inFlight = 0;
  /** Records read while maxCallsInFlight calls were running. */
  private readonly waiting: Buffer[] = [];
  private readPaused = false;
  private writeBlocked = false;
  private corked = false;
  private readEnded = false;
  /** Draining: no new calls are read; the connection closes once those received are answered. */
  private draining = false;
  private closedReason: string | null = null;
  private lastActivity = performance.now();
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(socket: Duplex, peer: Peer, dispatcher: RpcDispatcher, logger: Logger, options: RpcConnectionOptions = {}) {
    super();
    this.id = nextConnectionId++;
    this.peer = peer;
    this.localPort = options.localPort;
    this.socket = socket;
    this.dispatcher = dispatcher;
    this.logger = logger.child({ conn: this.id, peer: peerIdentity(peer) });
    this.maxCallsInFlight = Math.max(1, options.maxCallsInFlight ?? DEFAULT_MAX_CALLS_IN_FLIGHT);
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.maxQueuedReplyBytes = Math.max(0, options.maxQueuedReplyBytes ?? DEFAULT_MAX_QUEUED_REPLY_BYTES);
    this.splicer = options.splicer;
    this.spliceFd = this.splicer ? socketFd(socket) : undefined;
    const readerOptions: { maxRecordSize?: number; maxFragments?: number } = {};
    if (options.maxRecordSize !== undefined) readerOptions.maxRecordSize = options.maxRecordSize;
    if (options.maxFragments !== undefined) readerOptions.maxFragments = options.maxFragments;
    this.reader = new RecordReader((record) => this.onRecord(record), readerOptions);

    if (options.reads) {
      const scratch = sharedScratch();
      options.reads.attach({
        nextBuffer: () => (this.closedReason === null ? this.reader.readTarget(scratch) : scratch),
        onRead: (bytes, target) => this.onData((reader) => reader.filled(target, bytes)),
      });
    } else {
      socket.on('data', (chunk: Buffer) => this.onData((reader) => reader.push(chunk)));
    }
    socket.on('drain', () => this.onDrain());
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
    socket.on('close', () => this.close('socket closed'));
    if (this.idleTimeoutMs > 0) this.armIdleTimer(this.idleTimeoutMs);
    this.logger.debug({ localPort: this.localPort }, 'RPC connection open');
    if (socket.destroyed) this.close('socket closed');
  }

  get callsInFlight(): number {
    return this.inFlight;
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  /** Why the connection closed, or null while open. */
  get closeReason(): string | null {
    return this.closedReason;
  }

  /** Close now: replies still being computed are discarded. Idempotent. */
  close(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    this.waiting.length = 0;
    this.reader.discard();
    for (const reply of this.output) releaseTail(replyTails.get(reply));
    this.output.length = 0;
    this.outputBytes = 0;
    if (this.splicing !== null) this.splicer?.cancel(this.splicing);
    this.socket.destroy();
    this.logger.debug({ reason, callsInFlight: this.inFlight }, 'RPC connection closed');
    this.emit('close', reason);
  }

  /**
   * Stop reading new calls, answer the ones already received, then close (a daemon shutting
   * down). Resolves when closed; the caller bounds the wait and close()s what is left.
   */
  drain(): Promise<void> {
    if (this.closedReason !== null) return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
    if (!this.draining) {
      this.draining = true;
      this.readPaused = true;
      this.socket.pause();
      this.closeIfDrained();
    }
    return closed;
  }

  private closeIfDrained(): void {
    if (!this.draining || this.closedReason !== null || this.inFlight > 0 || this.waiting.length > 0 || this.outputPending()) return;
    // end() flushes the replies already written; the close follows once they are out.
    if (this.socket.writableEnded || this.socket.destroyed) this.close('drained');
    else this.socket.end(() => this.close('drained'));
  }

  /** Bytes from the socket, handed to the record reader by `feed` (push, or filled for onread). */
  private onData(feed: (reader: RecordReader) => void): void {
    if (this.closedReason !== null) return;
    this.lastActivity = performance.now();
    try {
      feed(this.reader);
    } catch (err) {
      if (err instanceof RecordError) {
        this.logger.warn({ code: err.code, limit: this.reader.maxRecordSize }, 'closing RPC connection: %s', err.message);
        this.close(err.code);
        return;
      }
      throw err;
    }
    this.updateFlow();
  }

  private onRecord(record: Buffer): void {
    if (this.closedReason !== null) return;
    if (this.waiting.length === 0 && this.canStart()) {
      this.start(record);
    } else {
      this.waiting.push(record);
    }
  }

  /** A new call may run: below the cap, and the peer is reading what we already answered. */
  private canStart(): boolean {
    return this.inFlight < this.maxCallsInFlight && !this.writeBlocked;
  }

  private startWaiting(): void {
    while (this.waiting.length > 0 && this.canStart()) this.start(this.waiting.shift()!);
  }

  private start(record: Buffer): void {
    this.inFlight += 1;
    this.dispatcher.dispatch(record, this.peer, this).then(
      (reply) => {
        // Answered: nothing holds the record any more (a READ or WRITE still running on the
        // threadpool past its timeout has pinned its buffer, and give() leaves it alone).
        if (record.length >= LARGE_BUFFER_MIN) largeBuffers.give(record);
        this.finishCall(reply);
      },
      (err: unknown) => {
        // dispatch() never rejects; if it does, the caller would wait for a reply forever, so
        // closing makes the client reconnect and retransmit.
        this.logger.error({ err }, 'RPC dispatch rejected');
        this.finishCall(null);
        this.close('dispatch failed');
      },
    );
  }

  private finishCall(reply: Buffer | null): void {
    this.inFlight -= 1;
    if (this.closedReason !== null) {
      // Answered after the connection closed: a spliced reply's pipe is let go here.
      if (reply !== null) releaseTail(replyTails.get(reply));
      return;
    }
    this.lastActivity = performance.now();
    if (reply !== null) this.write(reply);
    this.startWaiting();
    this.updateFlow();
    this.endIfDone();
    this.closeIfDrained();
  }

  private write(reply: Buffer): void {
    const socket = this.socket;
    if (socket.writableEnded || socket.destroyed) {
      releaseTail(replyTails.get(reply));
      return;
    }
    const tail = replyTails.get(reply);
    if (tail !== undefined || this.output.length > 0 || this.splicing !== null) {
      // Behind (or itself) a spliced reply: kept in order here until the socket is ours alone.
      this.output.push(reply);
      this.outputBytes += reply.length + (tail ? tail.count : 0);
      this.pumpOutput();
    } else {
      this.writeToSocket(reply);
    }
    this.checkWriteBlocked();
  }

  private writeToSocket(reply: Buffer): void {
    const socket = this.socket;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      // setImmediate, not nextTick: each threadpool completion is its own callback (ticks drain
      // after each), while every completion of one loop turn runs before the check phase. So the
      // replies of one turn leave in one writev.
      setImmediate(this.uncork);
    }
    if (reply.length >= LARGE_BUFFER_MIN) socket.write(reply, () => largeBuffers.give(reply));
    else socket.write(reply);
  }

  /**
   * Hands queued replies to the socket in order. A spliced reply goes out only once the socket has
   * written everything before it (the native side writes to the socket directly), and everything
   * after it waits until it is out.
   */
  private pumpOutput(): void {
    while (this.output.length > 0 && this.splicing === null && this.closedReason === null) {
      const reply = this.output[0]!;
      const tail = replyTails.get(reply);
      if (tail === undefined) {
        this.output.shift();
        this.outputBytes -= reply.length;
        this.writeToSocket(reply);
        continue;
      }
      const socket = this.socket;
      if (this.corked || socket.writableLength > 0) {
        if (!this.flushing) {
          this.flushing = true;
          if (this.corked) this.uncork();
          // Writes complete in order: this callback runs once everything before it is written.
          socket.write(EMPTY, () => {
            this.flushing = false;
            this.pumpOutput();
            this.checkWriteBlocked();
          });
        }
        return;
      }
      this.output.shift();
      this.outputBytes -= reply.length + tail.count;
      // The descriptor must still be this connection's socket: the native side writes to it.
      if (socket.destroyed || socketFd(socket) !== this.spliceFd) {
        releaseTail(tail);
        this.close('socket gone before a spliced reply');
        return;
      }
      let sending: { id: number; done: Promise<{ err: number }> };
      try {
        sending = this.splicer!.send(this.spliceFd!, reply, tail.pipeFd, tail.count, tail.pad);
      } catch (err) {
        releaseTail(tail);
        this.logger.error({ err }, 'spliced reply could not start');
        this.close('spliced reply failed');
        return;
      }
      const { id, done } = sending;
      pipeClosed(); // the native side owns and closes it now
      this.splicing = id;
      done.then(({ err }) => {
        this.splicing = null;
        largeBuffers.give(reply);
        if (this.closedReason !== null) return;
        if (err !== 0) {
          this.logger.debug({ errno: err }, 'spliced reply failed');
          this.close(`spliced reply failed (errno ${err})`);
          return;
        }
        this.lastActivity = performance.now();
        this.pumpOutput();
        this.checkWriteBlocked();
        this.endIfDone();
        this.closeIfDrained();
      });
    }
  }

  /** Replies held (socket queue, our queue) past the bound stop new calls; below it they start again. */
  private checkWriteBlocked(): void {
    const held = this.socket.writableLength + this.outputBytes;
    if (!this.writeBlocked && held > this.maxQueuedReplyBytes) {
      this.writeBlocked = true;
      this.updateFlow();
    } else if (this.writeBlocked && held <= this.maxQueuedReplyBytes && this.output.length === 0 && this.splicing === null) {
      // 'drain' brings the socket's own queue back, but only when a write was refused; replies that
      // waited behind a splice may have gone out without that, and then nothing else would.
      if (!(this.socket as { writableNeedDrain?: boolean }).writableNeedDrain) this.onDrain();
    }
  }

  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  };

  private onDrain(): void {
    this.writeBlocked = false;
    if (this.closedReason !== null) return;
    this.lastActivity = performance.now();
    this.startWaiting();
    this.updateFlow();
    this.endIfDone();
  }

  /** Pause reading while the calls cap is reached or the socket's write buffer is full. */
  private updateFlow(): void {
    if (this.closedReason !== null || this.draining) return;
    const pause = this.writeBlocked || this.inFlight + this.waiting.length >= this.maxCallsInFlight;
    if (pause && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    } else if (!pause && this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  private outputPending(): boolean {
    return this.output.length > 0 || this.splicing !== null || this.flushing;
  }

  /** The peer sent FIN: answer what it asked, then close our side. */
  private onEnd(): void {
    this.readEnded = true;
    this.endIfDone();
  }

  private endIfDone(): void {
    if (!this.readEnded || this.inFlight > 0 || this.waiting.length > 0 || this.outputPending()) return;
    if (!this.socket.writableEnded) this.socket.end();
  }

  private onError(err: NodeJS.ErrnoException): void {
    // Resets and broken pipes are how peers leave; nothing an operator needs at info.
    this.logger.debug({ code: err.code, err }, 'RPC connection socket error');
    this.close(`socket error${err.code ? `: ${err.code}` : ''}`);
  }

  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(this.checkIdle, delayMs);
    this.idleTimer.unref();
  }

  private readonly checkIdle = (): void => {
    this.idleTimer = null;
    if (this.closedReason !== null) return;
    // Calls still running keep a connection alive, unless the peer has stopped reading replies:
    // then the time since it last took any (drain) counts as idle.
    if ((this.inFlight > 0 || this.waiting.length > 0) && !this.writeBlocked) {
      this.armIdleTimer(this.idleTimeoutMs);
      return;
    }
    const idleFor = performance.now() - this.lastActivity;
    if (idleFor >= this.idleTimeoutMs) {
      this.logger.debug({ idleMs: Math.round(idleFor) }, 'closing idle RPC connection');
      this.close('idle');
    } else {
      this.armIdleTimer(Math.max(1, Math.ceil(this.idleTimeoutMs - idleFor)));
    }
  };
}

const EMPTY = Buffer.alloc(0);

/** The descriptor under a Node socket (TCP and pipe handles expose it on Unix), if any. */
function socketFd(socket: Duplex): number | undefined {
  const fd = (socket as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

/** A spliced reply that will not be sent lets go of its pipe. */
function releaseTail(tail: ReplyTail | undefined): void {
  if (tail !== undefined) closePipe(tail.pipeFd);
}
