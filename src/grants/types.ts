// Grants: which guest may mount which share, and how (DESIGN.md "Identity and grants").
import { normalizeAddress } from '../rpc/types.js';

export type GuestSelector = { tcp: string } | { cid: number } | { vm: string };

export type Access = 'rw' | 'ro';
export type Squash = 'none' | 'root' | 'all';

export interface Grant {
  /** Unique grant id. */
  readonly id: string;
  /** The share the guest mounts as `/<share>`. */
  readonly share: string;
  /** The backend holding the share, and the share's directory inside it. */
  readonly backend: string;
  readonly path: string;
  readonly guest: GuestSelector;
  readonly access: Access;
  readonly squash: Squash;
  readonly anonUid: number;
  readonly anonGid: number;
  /** Where the grant came from: the config file, or the controller (a later issue). */
  readonly source: 'static' | 'controller';
}

/** The identity string a guest selector matches (same form as rpc/types peerIdentity). */
export function guestIdentity(guest: GuestSelector): string {
  if ('tcp' in guest) return `tcp:${normalizeAddress(guest.tcp)}`;
  if ('cid' in guest) return `cid:${guest.cid}`;
  return `vm:${guest.vm}`;
}

export const DEFAULT_ANON_ID = 65534;
