// PORTMAP version 2 (RFC 1833 section 3), program 100000.
//
// One port serves every program (DESIGN.md), so the map is fixed: each program we serve maps to
// the port the asking connection arrived on. Registrations over the wire are refused, and
// CALLIT (indirect calls) is not offered: forwarding calls is an amplifier we do not need.
//
//   struct mapping { unsigned int prog; unsigned int vers; unsigned int prot; unsigned int port; };
//   struct *pmaplist { mapping map; pmaplist next; };
//   PMAPPROC_NULL(void) = 0;          bool PMAPPROC_SET(mapping) = 1;
//   bool PMAPPROC_UNSET(mapping) = 2; unsigned int PMAPPROC_GETPORT(mapping) = 3;
//   pmaplist PMAPPROC_DUMP(void) = 4; call_result PMAPPROC_CALLIT(call_args) = 5;

import type { XdrReader, XdrWriter } from '../rpc/xdr.js';
import { PROGRAM, type ProcedureHandler, type RpcCall, type RpcProgram } from '../rpc/types.js';

export const PMAP_VERSION = 2;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** RFC 1833 section 3.2: procedure numbers. */
export enum PmapProc {
  NULL = 0,
  SET = 1,
  UNSET = 2,
  GETPORT = 3,
  DUMP = 4,
  CALLIT = 5,
}

/** A (program, version, protocol) we answer for; the port is the serving port. */
export interface PortmapEntry {
  readonly prog: number;
  readonly vers: number;
  readonly prot: number;
}

/** NFS v3, MOUNT v3 and PORTMAP v2 itself, all over TCP. */
export const DEFAULT_PORTMAP_ENTRIES: readonly PortmapEntry[] = [
  { prog: PROGRAM.NFS, vers: 3, prot: IPPROTO_TCP },
  { prog: PROGRAM.MOUNT, vers: 3, prot: IPPROTO_TCP },
  { prog: PROGRAM.PORTMAP, vers: PMAP_VERSION, prot: IPPROTO_TCP },
];

export interface PortmapOptions {
  /** The mappings answered; default DEFAULT_PORTMAP_ENTRIES. */
  entries?: readonly PortmapEntry[];
  /** The port serving this call's programs; default the connection's localPort (0 if unknown). */
  portOf?: (call: RpcCall) => number;
}

const PROCEDURE_NAMES: readonly string[] = ['NULL', 'SET', 'UNSET', 'GETPORT', 'DUMP', 'CALLIT'];

interface Mapping {
  prog: number;
  vers: number;
  prot: number;
  port: number;
}

function readMapping(args: XdrReader): Mapping {
  return { prog: args.uint32(), vers: args.uint32(), prot: args.uint32(), port: args.uint32() };
}

export class PortmapProgram implements RpcProgram {
  readonly prog = PROGRAM.PORTMAP;
  readonly lowVersion = PMAP_VERSION;
  readonly highVersion = PMAP_VERSION;
  readonly name = 'portmap2';

  private readonly entries: readonly PortmapEntry[];
  private readonly portOf: (call: RpcCall) => number;
  private readonly handlers: readonly (ProcedureHandler | undefined)[];

  constructor(options: PortmapOptions = {}) {
    this.entries = options.entries ?? DEFAULT_PORTMAP_ENTRIES;
    this.portOf = options.portOf ?? ((call) => call.connection.localPort ?? 0);
    this.handlers = [
      () => undefined, // NULL
      (call, reply) => this.refuse(call, reply), // SET
      (call, reply) => this.refuse(call, reply), // UNSET
      (call, reply) => this.getport(call, reply),
      (call, reply) => this.dump(call, reply),
      undefined, // CALLIT: PROC_UNAVAIL
    ];
  }

  procedure(vers: number, proc: number): ProcedureHandler | undefined {
    return vers === PMAP_VERSION ? this.handlers[proc] : undefined;
  }

  procedureName(vers: number, proc: number): string | undefined {
    return vers === PMAP_VERSION ? PROCEDURE_NAMES[proc] : undefined;
  }

  /** SET, UNSET: the arguments must decode, and the answer is false. */
  private refuse(call: RpcCall, reply: XdrWriter): void {
    readMapping(call.args);
    reply.bool(false);
  }

  /** GETPORT: the serving port for a mapping we hold, 0 otherwise (RFC 1833 section 3.2). */
  private getport(call: RpcCall, reply: XdrWriter): void {
    const want = readMapping(call.args);
    const held = this.entries.some((e) => e.prog === want.prog && e.vers === want.vers && e.prot === want.prot);
    reply.uint32(held ? this.portOf(call) : 0);
  }

  /** DUMP: every mapping, as the XDR optional-data list pmaplist. */
  private dump(call: RpcCall, reply: XdrWriter): void {
    const port = this.portOf(call);
    for (const entry of this.entries) {
      reply.bool(true).uint32(entry.prog).uint32(entry.vers).uint32(entry.prot).uint32(port);
    }
    reply.bool(false);
  }
}

/** The PORTMAP v2 program (the factory form the other programs use). */
export function createPortmapProgram(options: PortmapOptions = {}): RpcProgram {
  return new PortmapProgram(options);
}
