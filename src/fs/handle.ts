// NFS file handles (DESIGN.md "File handles"): restart-stable, bound to one share, unforgeable.
//
// Layout (at most 64 bytes, RFC 1813 section 2.5 NFS3_FHSIZE):
//   0      version (1)
//   1      kernel handle length L (<= 38)
//   2..9   share key: 8 bytes naming the share (derived from its id, backend and path)
//   10..13 kernel handle type (int32, struct file_handle.handle_type)
//   14..   kernel handle bytes (L)
//   then   tag: the first 12 bytes of HMAC-SHA256(secret, everything before it)
// The secret lives in state_dir, so handles survive restarts; any change to a handle's bytes, or a
// handle made for another share, fails the tag check.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeSync, fsyncSync, closeSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { KernelHandle } from '../native/fsbridge.js';

export const HANDLE_VERSION = 1;
const HEADER = 14;
const TAG = 12;
export const MAX_KERNEL_HANDLE = 64 - HEADER - TAG;
export const SHARE_KEY_BYTES = 8;

export interface DecodedHandle {
  /** hex of the share key */
  shareKey: string;
  kernel: KernelHandle;
}

/** Handles remembered by encode(): an HMAC per READDIRPLUS entry was a fifth of the main thread. */
const ENCODED_CACHE = 32_768;

export class HandleCodec {
  /** (share key, kernel handle) -> NFS handle, least recently made first. Read-only buffers. */
  private readonly encoded = new Map<string, Buffer>();

  constructor(private readonly secret: Buffer) {
    if (secret.length < 32) throw new Error('handle secret must be at least 32 bytes');
  }

  /**
   * The secret, for the native READDIRPLUS encoder, which makes the same handles on its worker
   * threads (native-bridges/src/readdir.cc). Never log it.
   */
  get nativeSecret(): Buffer {
    return this.secret;
  }

  /** The share key: a stable digest of where the share lives, so re-pointing a share makes old handles stale. */
  static shareKey(shareId: string, backend: string, sharePath: string): Buffer {
    return createHash('sha256').update(`${shareId}\0${backend}\0${sharePath}`).digest().subarray(0, SHARE_KEY_BYTES);
  }

  private tag(bytes: Buffer): Buffer {
    return createHmac('sha256', this.secret).update(bytes).digest().subarray(0, TAG);
  }

  /** Returns null when the kernel handle is too long to fit (the caller answers SERVERFAULT). */
  encode(shareKey: Buffer, kernel: KernelHandle): Buffer | null {
    const length = kernel.bytes.length;
    if (length > MAX_KERNEL_HANDLE) return null;
    // The same object listed again (READDIRPLUS of a big directory, page after page) costs a map
    // lookup, not an HMAC. The handle is a pure function of its inputs, so a hit is exact.
    const cacheKey = `${shareKey.toString('latin1', 0, SHARE_KEY_BYTES)}${kernel.type}:${kernel.bytes.toString('latin1')}`;
    const hit = this.encoded.get(cacheKey);
    if (hit) return hit;
    const handle = Buffer.allocUnsafe(HEADER + length + TAG);
    handle[0] = HANDLE_VERSION;
    handle[1] = length;
    shareKey.copy(handle, 2, 0, SHARE_KEY_BYTES);
    handle.writeInt32BE(kernel.type, 10);
    kernel.bytes.copy(handle, HEADER);
    this.tag(handle.subarray(0, HEADER + length)).copy(handle, HEADER + length);
    this.encoded.set(cacheKey, handle);
    if (this.encoded.size > ENCODED_CACHE) this.encoded.delete(this.encoded.keys().next().value!);
    return handle;
  }

  /** Verifies and decodes a handle from the wire; null for anything the gateway did not issue. */
  decode(handle: Buffer): DecodedHandle | null {
    if (handle.length < HEADER + TAG || handle[0] !== HANDLE_VERSION) return null;
    const length = handle[1]!;
    if (length > MAX_KERNEL_HANDLE || handle.length !== HEADER + length + TAG) return null;
    const expected = this.tag(handle.subarray(0, HEADER + length));
    if (!timingSafeEqual(expected, handle.subarray(HEADER + length))) return null;
    return {
      shareKey: handle.toString('hex', 2, 2 + SHARE_KEY_BYTES),
      kernel: {
        type: handle.readInt32BE(10),
        // a copy: the wire buffer is reused once the call is answered, and this may be cached
        bytes: Buffer.from(handle.subarray(HEADER, HEADER + length)),
      },
    };
  }

  /** An 8-byte value derived from the secret: the READDIR cookie verifier (stable across restarts). */
  derive(label: string, bytes = 8): Buffer {
    return createHmac('sha256', this.secret).update(label).digest().subarray(0, bytes);
  }
}

/**
 * Loads the handle secret from `stateDir/handle-key`, creating it (32 random bytes, mode 0600,
 * written to a temp file, fsynced and renamed) on first start.
 */
export function loadHandleSecret(stateDir: string): Buffer {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, 'handle-key');
  try {
    const secret = readFileSync(file);
    if (secret.length < 32) throw new Error(`${file}: shorter than 32 bytes; remove it to make a new one (all handles change)`);
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const secret = randomBytes(32);
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, secret);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  const dirFd = openSync(stateDir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return secret;
}
