/**
 * The one place the plugin talks to the sidecar: JSON-RPC 2.0 with LSP framing
 * (`Content-Length: N\r\n\r\n` + UTF-8 JSON) over the workspace's unix socket,
 * as docs/protocol.md describes.
 *
 * A delivery is `initialize` (awaited), `initialized`, `nxops/tasks/report`
 * (awaited, so the report is in before Nx exits), then the socket is closed.
 * Everything is bounded by one deadline; past it the socket is destroyed and
 * the delivery reported as failed. Nothing here throws: the caller gets a
 * {@link Delivery} saying what happened.
 */

import { createConnection, type Socket } from 'node:net';

import type { TasksReport } from './report';

export type Delivery =
  /** `accepted` is the sidecar's count of tasks kept (null if its answer had none). */
  | { readonly kind: 'delivered'; readonly accepted: number | null }
  /** Nobody listens on the socket (it is missing, or left behind by a sidecar that died). */
  | { readonly kind: 'no-sidecar'; readonly reason: string }
  | { readonly kind: 'failed'; readonly reason: string };

export interface DeliveryOptions {
  readonly timeoutMs: number;
  readonly clientVersion: string;
}

export const CLIENT_NAME = '@nxops/nx-plugin';

/** Sends `report` to the sidecar listening on `socketPath`. */
export async function deliverTasksReport(
  socketPath: string,
  report: TasksReport,
  options: DeliveryOptions,
): Promise<Delivery> {
  const socket = createConnection({ path: socketPath });
  // Errors are also reported through the promises below; this listener only
  // makes sure a late one can never become an uncaught exception in Nx.
  socket.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Delivery>((resolve) => {
    const reason = `the sidecar did not answer within ${options.timeoutMs} ms`;
    timer = setTimeout(() => resolve({ kind: 'failed', reason }), options.timeoutMs);
  });
  const exchange = (async (): Promise<Delivery> => {
    try {
      await connected(socket);
    } catch (error) {
      return connectFailure(error);
    }
    try {
      return await converse(new Connection(socket), report, options.clientVersion);
    } catch (error) {
      return { kind: 'failed', reason: error instanceof Error ? error.message : String(error) };
    }
  })();
  try {
    return await Promise.race([exchange, deadline]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

async function converse(connection: Connection, report: TasksReport, version: string): Promise<Delivery> {
  await connection.request('initialize', {
    processId: process.pid,
    capabilities: {},
    clientInfo: { name: CLIENT_NAME, version },
  });
  connection.notify('initialized', {});
  const result = (await connection.request('nxops/tasks/report', report)) as { accepted?: unknown } | null;
  const accepted = typeof result?.accepted === 'number' ? result.accepted : null;
  return { kind: 'delivered', accepted };
}

function connected(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.removeListener('error', reject);
      resolve();
    });
    socket.once('error', reject);
  });
}

function connectFailure(error: unknown): Delivery {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = `cannot connect to the sidecar: ${(error as Error).message}`;
  return code === 'ENOENT' || code === 'ECONNREFUSED' ? { kind: 'no-sidecar', reason } : { kind: 'failed', reason };
}

/** An error answer from the sidecar. */
class RpcError extends Error {
  constructor(method: string, code: unknown, message: unknown) {
    super(`the sidecar refused ${method}: ${String(message)} (${String(code)})`);
  }
}

interface Pending {
  readonly method: string;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: Error) => void;
}

/** One LSP-framed JSON-RPC connection: requests matched to answers by id. */
class Connection {
  private buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.failAll(error));
    socket.on('close', () => this.failAll(new Error('the sidecar closed the connection')));
  }

  request(method: string, params: unknown): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      this.send({ jsonrpc: '2.0', id, method, params });
    });
  }

  notify(method: string, params: unknown): void {
    this.send({ jsonrpc: '2.0', method, params });
  }

  private send(message: unknown): void {
    const body = Buffer.from(JSON.stringify(message), 'utf-8');
    this.socket.write(Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'ascii'), body]));
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const headerEnd = this.buffer.indexOf('\r\n\r\n');
      if (headerEnd < 0) return;
      const length = /content-length:\s*(\d+)/i.exec(this.buffer.subarray(0, headerEnd).toString('ascii'));
      if (length === null) {
        this.failAll(new Error('the sidecar sent a frame without Content-Length'));
        return;
      }
      const bodyStart = headerEnd + 4;
      const bodyEnd = bodyStart + Number(length[1]);
      if (this.buffer.length < bodyEnd) return;
      const body = this.buffer.subarray(bodyStart, bodyEnd).toString('utf-8');
      this.buffer = this.buffer.subarray(bodyEnd);
      this.dispatch(body);
    }
  }

  private dispatch(body: string): void {
    let message: { id?: unknown; method?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
    try {
      message = JSON.parse(body);
    } catch {
      return;
    }
    if (typeof message.method === 'string') {
      // A request from the sidecar: this client serves none. Notifications are ignored.
      if (message.id !== undefined) {
        this.send({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'method not found' } });
      }
      return;
    }
    const pending = typeof message.id === 'number' ? this.pending.get(message.id) : undefined;
    if (pending === undefined) return;
    this.pending.delete(message.id as number);
    if (message.error !== undefined) {
      pending.reject(new RpcError(pending.method, message.error?.code, message.error?.message));
    } else {
      pending.resolve(message.result);
    }
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) {
      pending.reject(error);
    }
    this.pending.clear();
  }
}
