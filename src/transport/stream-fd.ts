// A net.Socket over an already connected stream socket fd of any family (AF_VSOCK here), so a
// vsock connection is served by exactly the code that serves TCP: a Duplex with libuv's own
// buffering, backpressure ('drain', writableLength) and half-close, and no copy per byte beyond
// what read()/write() do.
//
// Why process.binding: no public API adopts such an fd. `new net.Socket({ fd })` asks libuv's
// uv_guess_handle() what the fd is, which knows only AF_UNIX and AF_INET/AF_INET6 sockets and
// answers UNKNOWN for AF_VSOCK (ERR_INVALID_FD_TYPE). libuv's uv_pipe_open(), though, is plain
// read()/write()/shutdown() on any stream fd, and Node's Pipe handle (pipe_wrap, the handle behind
// every AF_UNIX net.Socket) exposes it as open(fd); `new net.Socket({ handle })` is how Node itself
// wraps handles it made. This file is the only place that reaches into that binding: if a future
// Node drops it, socketFromFd fails with an error naming the Node version, and the rest of the
// vsock transport needs only a new way to get a Duplex here.
//
// Under Node 20, process.binding('pipe_wrap') prints no deprecation warning by default (it is in
// Node's allow list; DEP0111 is documentation-only there, a warning only with --pending-deprecation).
import { closeSync } from 'node:fs';
import net from 'node:net';
import { errnoError } from '../native/sockets.js';
import type { SocketReads } from '../rpc/socket-reads.js';

interface PipeHandle {
  /** uv_pipe_open(fd): 0 or a negative errno. */
  open(fd: number): number;
  close(callback?: () => void): void;
}

interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

const UV_EEXIST = -17;

let pipeWrap: PipeWrapBinding | undefined;

function binding(): PipeWrapBinding {
  if (pipeWrap) return pipeWrap;
  let candidate: Partial<PipeWrapBinding> | undefined;
  let cause: unknown;
  try {
    candidate = (process as unknown as { binding(name: string): Partial<PipeWrapBinding> }).binding('pipe_wrap');
  } catch (error) {
    cause = error;
  }
  if (typeof candidate?.Pipe !== 'function' || typeof candidate.constants?.SOCKET !== 'number') {
    throw new Error(
      `stream-fd: Node ${process.version} has no usable process.binding('pipe_wrap') ` +
        `(Pipe and constants.SOCKET), which the vsock transport needs to wrap an AF_VSOCK fd in a net.Socket` +
        (cause === undefined ? '' : `: ${String(cause)}`),
    );
  }
  pipeWrap = candidate as PipeWrapBinding;
  return pipeWrap;
}

/** Throws (the same error socketFromFd would) if this Node cannot wrap fds; call at startup. */
export function checkStreamFdSupport(): void {
  binding();
}

/**
 * A net.Socket (allowHalfOpen: a peer that shuts down its sending side still gets the replies it
 * asked for, as the TCP listener does) on the connected stream socket `fd`, which it takes over:
 * the socket closes it when destroyed, and it is closed before any throw here (except EEXIST: an
 * fd libuv already watches, which is not the caller's to give). The fd is made
 * non-blocking. remoteAddress/remotePort are undefined: the transport knows the peer. `reads`: the
 * socket reads through it (RpcConnectionOptions.reads).
 */
export function socketFromFd(fd: number, reads?: SocketReads): net.Socket {
  let handle: PipeHandle;
  try {
    const { Pipe, constants } = binding();
    handle = new Pipe(constants.SOCKET);
  } catch (error) {
    closeQuietly(fd);
    throw error;
  }
  const err = handle.open(fd);
  if (err !== 0) {
    handle.close();
    // EEXIST: libuv already watches this fd, so it is not ours to close.
    if (err !== UV_EEXIST) closeQuietly(fd);
    throw errnoError(-err, 'uv_pipe_open', `stream-fd: cannot adopt fd ${fd}`);
  }
  return new net.Socket({ handle, readable: true, writable: true, allowHalfOpen: true, ...(reads ? { onread: reads.onread } : {}) } as net.SocketConstructorOpts);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // EBADF: it was not open (the error being thrown says why)
  }
}
