// The pipes of zero-copy READs (native-bridges/src/splice.cc), counted: each holds a descriptor
// and up to 1 MiB of page cache the kernel cannot reclaim until it is sent or closed. Past
// MAX_OPEN_PIPES, READs copy their data as before instead of taking one more.

import { closeSync } from 'node:fs';

/** Pipes held at most, process-wide (a few MiB of descriptors' worth; the kernel's per-user pipe quota applies too). */
export const MAX_OPEN_PIPES = 128;

let open = 0;

/** Pipes held now. */
export function openPipes(): number {
  return open;
}

/** Whether one more pipe may be taken (then call pipeOpened() once it is). */
export function pipeAvailable(): boolean {
  return open < MAX_OPEN_PIPES;
}

export function pipeOpened(): void {
  open++;
}

/** The pipe passed to the native side, which closes it when its send ends. */
export function pipeClosed(): void {
  if (open > 0) open--;
}

/** Closes a pipe we hold and no longer need. */
export function closePipe(fd: number): void {
  pipeClosed();
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}
