// The part of the nxops protocol (docs/protocol.md) the extension uses: the
// connection it needs, the wire types of the answers it shows, and the events
// it subscribes to. No vscode import: the same code runs in the editor (over
// vscode-languageclient) and in node tests (over vscode-jsonrpc).

import type { ProgressType } from 'vscode-jsonrpc';

/** Something that can be undone, like a registered handler. */
export interface Disposable {
  dispose(): void;
}

/** A cancellation signal, as vscode-jsonrpc and vscode both define it. */
export interface CancellationToken {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): Disposable;
}

/**
 * What the extension needs of a JSON-RPC connection. vscode-languageclient's
 * `LanguageClient` and vscode-jsonrpc's `MessageConnection` both have it, so
 * the logic is tested in node against the real sidecar without an editor.
 */
export interface NxopsConnection {
  sendRequest<R>(method: string, params: unknown): Promise<R>;
  sendRequest<R>(method: string, params: unknown, token: CancellationToken): Promise<R>;
  onNotification(method: string, handler: (params: any) => void): Disposable;
  onProgress<P>(type: ProgressType<P>, token: string | number, handler: (params: P) => void): Disposable;
}

/** LSP work-done progress values (`$/progress`). */
export type WorkDoneProgress =
  | { kind: 'begin'; title: string; message?: string; percentage?: number; cancellable?: boolean }
  | { kind: 'report'; message?: string; percentage?: number }
  | { kind: 'end'; message?: string };

export const RATINGS = ['Excellent', 'Good', 'Fair', 'Poor', 'Critical'] as const;
export type Rating = (typeof RATINGS)[number];

export interface HealthComponent {
  name: string;
  score: number;
  reasons: string[];
}

export interface HealthReport {
  workspace: string;
  rating: Rating;
  score: number;
  components: HealthComponent[];
  reasons: string[];
  checkedAt: number;
  /** False when no sidecar watches the workspace: only the cache was judged. */
  sidecar?: boolean;
  /** Set on `nxops/healthCheck` events only: true when the published `rating` moved. */
  changed?: boolean;
  /**
   * Set on `nxops/healthCheck` events only: this check's own rating. `rating` is the published one,
   * which has hysteresis (worse at once, better after 10 s).
   */
  measuredRating?: Rating;
}

export interface WorkspaceInfo {
  root: string;
  attachedAt: number;
  cacheDir: string;
  role: { kind: string; socket?: string; ownerPid?: number; connected?: boolean };
}

export interface CacheStats {
  workspaceRoot: string;
  cacheDir: string;
  dbFile: string | null;
  maxSize: number;
  maxAgeMs: number;
  entries: number;
  bytes: number;
  utilization: number;
  volume: { totalBytes: number; freeBytes: number } | null;
  ages: { label: string; entries: number; bytes: number }[];
  hitRate: { days: number; hits: number; executed: number; rate: number | null } | null;
  consumers: { project: string; target: string; entries: number; bytes: number }[];
  durationMs: number;
}

export interface CleanParams {
  workspace?: string;
  maxSize?: string;
  maxAge?: string;
  force?: boolean;
}

export interface CleanResult {
  cacheDir: string;
  dryRun: boolean;
  force: boolean;
  maxSize: number;
  maxAgeMs: number;
  before: { entries: number; bytes: number };
  after: { entries: number; bytes: number };
  removed: { hash: string | null; project: string | null; target: string | null; bytes: number; reason: string }[];
  unlisted: number;
  byReason: Record<string, { entries: number; bytes: number }>;
  skipped: { hash: string; why: string }[];
  entries: number;
  files: number;
  bytesFreed: number;
  durationMs: number;
  cancelled: boolean;
}

export interface VerifyResult {
  cacheDir: string;
  checked: number;
  recorded: number;
  missingFolders: number;
  problems: { hash: string; project: string | null; target: string | null; kind: string; detail: string }[];
  fixed: number;
  cancelled: boolean;
  durationMs: number;
}

export interface ResetResult {
  path: string;
  all: boolean;
  command: string | null;
  exitCode: number | null;
  timedOut: boolean;
  fallbackReason: string | null;
  removed: string[];
  durationMs: number;
}

export interface OptimizeFigures {
  rating: Rating;
  score: number;
  cacheBytes: number | null;
  idleMcpConnections: number | null;
}

export interface OptimizeResult {
  workspace: string;
  before: OptimizeFigures;
  actions: { name: string; done: string }[];
  after: OptimizeFigures;
}

export interface ProcessView {
  name: string;
  origin: string;
  state: string;
  pid: number | null;
  uptimeMs: number | null;
  restarts: number;
  rssBytes: number;
  cpuPercent: number;
  lastExit: { code: number | null; signal: number | null; reason: string } | null;
  givenUp: string | null;
  command: string;
}

export interface ProcessList {
  workspace: string;
  config: { path: string; exists: boolean; trust: string | null; problem: string | null; blocked: string[] };
  processes: ProcessView[];
}

export interface ProcessLogs {
  name: string;
  stdout: string[];
  stderr: string[];
  files: { stdout: string; stderr: string };
}

export interface McpServer {
  name: string;
  transport: string;
  source: string;
  sourceKind: string;
  command: string | null;
  url: string | null;
  pooled: boolean;
  reason: string | null;
  trust: string | null;
  pool: { busy: number; idle: number; coldStarts: number; warmAcquires: number; medianAcquireUs: number | null } | null;
}

export interface McpServers {
  workspace: string;
  sidecar: boolean;
  problems: string[];
  servers: McpServer[];
}

/** One session, as `nxops/session/list` shows it. */
export interface Session {
  id: string;
  kind: 'connection' | 'named';
  clientName: string | null;
  clientVersion: string | null;
  openedAt: number;
  lastSeen: number;
  timeoutMs: number;
  labels: Record<string, string>;
  processes: Record<string, unknown>;
  mcp: string[];
  subscriptions: string[];
  restarts: number;
  state: 'active' | 'disconnected' | 'closing' | 'saved';
  expiresAt: number | null;
}

/** `nxops/session/list` result. */
export interface SessionList {
  workspace: string;
  sidecar: boolean;
  sessions: Session[];
  counts: { active: number; disconnected: number; expiredRecently: number; expiredTotal: number; closedTotal: number };
}

/** `nxops/processFailure` params. */
export interface ProcessFailure {
  workspace: string;
  name: string;
  pid: number | null;
  reason: string;
  restarts: number;
  willRestart: boolean;
  restartInMs: number | null;
  givenUp: string | null;
}

/** The events the extension subscribes to (names without the `nxops/` prefix). */
export const EVENTS = [
  'healthCheck',
  'processFailure',
  'processStarted',
  'processMemoryLeak',
  'cacheCleanup',
  'workspaceAttached',
  'workspaceDetached',
  'ownershipChanged',
] as const;
