// An AF_UNIX datagram receiver for tests (Node has no AF_UNIX SOCK_DGRAM): a python3 child binds a
// path or "@abstract" socket, says "ready", and prints each datagram it receives as a JSON string.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const SCRIPT = `
import json, socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + name[1:] if name.startswith("@") else name)
print("ready", flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps(data.decode("utf-8", "replace")), flush=True)
`;

export class DgramReceiver {
  readonly messages: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(private readonly child: ChildProcess) {}

  /** Starts a receiver bound to `address` (a path, or "@name") and waits until it is bound. */
  static async start(address: string): Promise<DgramReceiver> {
    const child = spawn('python3', ['-c', SCRIPT, address], { stdio: ['ignore', 'pipe', 'inherit'] });
    const receiver = new DgramReceiver(child);
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`dgram receiver exited (${code})`)));
      lines.on('line', (line) => {
        if (line === 'ready') {
          resolve();
          return;
        }
        receiver.messages.push(JSON.parse(line) as string);
        const waiters = receiver.waiters;
        receiver.waiters = [];
        for (const wake of waiters) wake();
      });
    });
    return receiver;
  }

  /** Resolves with the messages once there are at least `count` (rejects after timeoutMs). */
  async waitFor(count: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < count) {
      if (Date.now() > deadline) throw new Error(`${this.messages.length} of ${count} datagrams arrived`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
    return this.messages;
  }

  stop(): void {
    this.child.kill();
  }
}
