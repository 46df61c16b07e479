// RPC dispatch: one record in, one reply record out (or nothing). This is the boundary where
// exceptions become protocol answers (DESIGN.md): a thrown XdrError is GARBAGE_ARGS, anything
// else thrown is SYSTEM_ERR and logged here, once.
//
// Order of checks, as in knfsd's svc_process_common: header and credentials (message.ts), then
// program (PROG_UNAVAIL), version (PROG_MISMATCH low..high), procedure (PROC_UNAVAIL), handler.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';
import {
  decodeCall,
  encodeAcceptedReply,
  encodeAuthError,
  encodeProgMismatch,
  encodeRpcMismatch,
} from './message.js';
import { closePipe } from './pipes.js';
import { LAST_FRAGMENT, MAX_FRAGMENT_LENGTH, RECORD_MARK_SIZE, setRecordMark } from './record.js';
import {
  AcceptStat,
  peerIdentity,
  type ConnectionInfo,
  type Peer,
  type RpcCall,
  type RpcFailure,
  type RpcProgram,
  replyTails,
} from './types.js';

export type CallOutcome = 'ok' | 'garbage' | 'error' | 'denied' | 'unavailable';

/**
 * One answered call, for metrics. `program` and `procedure` are names from registered programs,
 * or 'unknown': never a number a peer chose, so label cardinality stays bounded.
 */
export interface CallInfo {
  readonly program: string;
  readonly procedure: string;
  readonly durationMs: number;
  readonly outcome: CallOutcome;
}

export interface RpcDispatcherOptions {
  logger: Logger;
  /** Called once per answered call (not for dropped records). Must not throw. */
  onCall?: (info: CallInfo) => void;
  /** Initial size of each reply buffer; it grows as handlers write. Default 512. */
  initialReplySize?: number;
}

const UNKNOWN = 'unknown';

function outcomeOf(stat: AcceptStat): CallOutcome {
  switch (stat) {
    case AcceptStat.SUCCESS:
      return 'ok';
    case AcceptStat.GARBAGE_ARGS:
      return 'garbage';
    case AcceptStat.SYSTEM_ERR:
      return 'error';
    default:
      return 'unavailable';
  }
}

export class RpcDispatcher {
  private readonly programs = new Map<number, RpcProgram>();
  private readonly logger: Logger;
  private readonly onCall: ((info: CallInfo) => void) | undefined;
  private readonly initialReplySize: number;

  constructor(options: RpcDispatcherOptions) {
    this.logger = options.logger;
    this.onCall = options.onCall;
    this.initialReplySize = Math.max(options.initialReplySize ?? 512, 64);
  }

  /** Serve `program`. One program per program number. */
  register(program: RpcProgram): void {
    if (this.programs.has(program.prog)) {
      throw new Error(`RPC program ${program.prog} (${program.name}) is already registered`);
    }
    if (program.lowVersion > program.highVersion) {
      throw new RangeError(`RPC program ${program.name}: versions ${program.lowVersion}..${program.highVersion}`);
    }
    this.programs.set(program.prog, program);
  }

  /** The registered program with this number, if any. */
  program(prog: number): RpcProgram | undefined {
    return this.programs.get(prog);
  }

  /**
   * Answer one record: the full reply with its record mark filled in, or null when nothing is to
   * be sent (the record was a reply, or too short to hold a call). Never rejects.
   */
  async dispatch(record: Buffer, peer: Peer, connection: ConnectionInfo): Promise<Buffer | null> {
    const started = this.onCall === undefined ? 0 : performance.now();
    const header = decodeCall(record, connection.credentials);

    if (header.kind === 'drop') {
      this.logger.debug({ peer: peerIdentity(peer), reason: header.reason }, 'RPC record dropped');
      return null;
    }
    if (header.kind === 'rpc-mismatch') {
      const w = this.writer();
      encodeRpcMismatch(w, header.xid);
      this.observe(UNKNOWN, UNKNOWN, started, 'denied');
      return this.finish(w);
    }

    const program = this.programs.get(header.prog);
    const programName = program?.name ?? UNKNOWN;
    const inRange = program !== undefined && header.vers >= program.lowVersion && header.vers <= program.highVersion;
    const procedureName = (inRange ? program?.procedureName(header.vers, header.proc) : undefined) ?? UNKNOWN;

    if (header.kind === 'auth-error') {
      const w = this.writer();
      encodeAuthError(w, header.xid, header.stat);
      this.observe(programName, procedureName, started, 'denied');
      return this.finish(w);
    }

    const w = this.writer();
    if (program === undefined) {
      encodeAcceptedReply(w, header.xid, AcceptStat.PROG_UNAVAIL);
      this.observe(programName, procedureName, started, 'unavailable');
      return this.finish(w);
    }
    if (!inRange) {
      encodeProgMismatch(w, header.xid, program.lowVersion, program.highVersion);
      this.observe(programName, procedureName, started, 'unavailable');
      return this.finish(w);
    }
    const handler = program.procedure(header.vers, header.proc);
    if (handler === undefined) {
      encodeAcceptedReply(w, header.xid, AcceptStat.PROC_UNAVAIL);
      this.observe(programName, procedureName, started, 'unavailable');
      return this.finish(w);
    }

    const statAt = encodeAcceptedReply(w, header.xid, AcceptStat.SUCCESS);
    const call: RpcCall = {
      xid: header.xid,
      prog: header.prog,
      vers: header.vers,
      proc: header.proc,
      flavor: header.flavor,
      authSys: header.authSys,
      args: new XdrReader(record, header.argsOffset),
      peer,
      connection,
    };

    let outcome: CallOutcome;
    try {
      const failure: void | RpcFailure = await handler(call, w);
      if (failure === undefined || failure === null) {
        outcome = 'ok';
      } else if ('auth' in failure) {
        dropTail(w);
        // Rewrite the whole reply as MSG_DENIED: nothing of the accepted header stays.
        w.offset = RECORD_MARK_SIZE;
        encodeAuthError(w, header.xid, failure.auth);
        outcome = 'denied';
      } else {
        dropTail(w);
        w.offset = statAt;
        w.uint32(failure.accept);
        outcome = outcomeOf(failure.accept);
      }
    } catch (err) {
      dropTail(w);
      w.offset = statAt;
      if (err instanceof XdrError) {
        w.uint32(AcceptStat.GARBAGE_ARGS);
        outcome = 'garbage';
        this.logger.debug(
          { peer: peerIdentity(peer), program: programName, procedure: procedureName, code: err.code },
          'RPC arguments did not decode',
        );
      } else {
        w.uint32(AcceptStat.SYSTEM_ERR);
        outcome = 'error';
        this.logger.error(
          { err, peer: peerIdentity(peer), program: programName, procedure: procedureName, xid: header.xid },
          'RPC procedure failed',
        );
      }
    }
    this.observe(programName, procedureName, started, outcome);
    return this.finish(w);
  }

  private writer(): XdrWriter {
    const w = new XdrWriter(this.initialReplySize);
    w.reserve(RECORD_MARK_SIZE);
    return w;
  }

  private finish(w: XdrWriter): Buffer {
    const reply = w.result();
    const tail = w.tail;
    if (tail === null) return setRecordMark(reply);
    // One fragment: the buffer after the mark, then the tail's bytes (RFC 5531 section 11).
    const length = reply.length - RECORD_MARK_SIZE + tail.count + tail.pad;
    if (length > MAX_FRAGMENT_LENGTH) {
      dropTail(w);
      throw new RangeError(`reply of ${length} bytes cannot be one record fragment`);
    }
    reply.writeUInt32BE((LAST_FRAGMENT | length) >>> 0, 0);
    replyTails.set(reply, tail);
    return reply;
  }

  private observe(program: string, procedure: string, started: number, outcome: CallOutcome): void {
    if (this.onCall === undefined) return;
    try {
      this.onCall({ program, procedure, durationMs: performance.now() - started, outcome });
    } catch (err) {
      this.logger.error({ err }, 'RPC onCall observer threw');
    }
  }
}

/** A reply that will not be sent as built lets go of its tail's pipe. */
function dropTail(w: XdrWriter): void {
  if (w.tail === null) return;
  closePipe(w.tail.pipeFd);
  w.tail = null;
}
