// Typed requests to the sidecar. Long operations carry a `workDoneToken`, so
// the sidecar reports `$/progress` for them, and take a cancellation token,
// which the connection turns into `$/cancelRequest`.

import { ProgressType } from 'vscode-jsonrpc';

import type { CacheStats, CancellationToken, CleanParams, CleanResult, HealthReport, McpServers, NxopsConnection, OptimizeResult, ProcessList, ProcessLogs, ProcessView, ResetResult, SessionList, VerifyResult, WorkDoneProgress, WorkspaceInfo } from './protocol';

/** How a long request reports to its caller. */
export interface Progress {
  /** Each `$/progress` value the sidecar sent for this request. */
  onProgress?: (value: WorkDoneProgress) => void;
  /** Cancels the request (`$/cancelRequest`). */
  token?: CancellationToken;
}

let nextToken = 0;

/** The sidecar's methods the extension calls, one wrapper each. */
export class NxopsClient {
  constructor(private readonly connection: NxopsConnection) {}

  async workspaces(): Promise<WorkspaceInfo[]> {
    const result = await this.request<{ workspaces: WorkspaceInfo[] }>('nxops/workspace/list', {});
    return result.workspaces;
  }

  subscribe(events: readonly string[]): Promise<{ subscribed: string[] }> {
    return this.request('nxops/subscribe', { events });
  }

  health(workspace: string): Promise<HealthReport> {
    return this.request('nxops/health', { workspace });
  }

  cacheStats(workspace: string): Promise<CacheStats> {
    return this.request('nxops/cache/stats', { workspace });
  }

  cacheClean(params: CleanParams & { dryRun: boolean }, progress: Progress = {}): Promise<CleanResult> {
    return this.request('nxops/cache/clean', params, progress);
  }

  cacheVerify(params: { workspace: string; fix?: boolean }, progress: Progress = {}): Promise<VerifyResult> {
    return this.request('nxops/cache/verify', params, progress);
  }

  cacheReset(params: { workspace: string; all?: boolean; timeout?: string }, progress: Progress = {}): Promise<ResetResult> {
    return this.request('nxops/cache/reset', params, progress);
  }

  perfOptimize(workspace: string, progress: Progress = {}): Promise<OptimizeResult> {
    return this.request('nxops/perf/optimize', { workspace }, progress);
  }

  processes(workspace: string): Promise<ProcessList> {
    return this.request('nxops/process/list', { workspace });
  }

  processRestart(workspace: string, name: string, progress: Progress = {}): Promise<ProcessView> {
    return this.request('nxops/process/restart', { workspace, name }, progress);
  }

  processLogs(workspace: string, name: string, lines = 200): Promise<ProcessLogs> {
    return this.request('nxops/process/logs', { workspace, name, lines });
  }

  sessions(workspace: string): Promise<SessionList> {
    return this.request('nxops/session/list', { workspace });
  }

  mcpServers(workspace: string): Promise<McpServers> {
    return this.request('nxops/mcp/servers', { workspace });
  }

  /** Any request; with `progress.onProgress`, it carries a fresh `workDoneToken`. */
  async request<R>(method: string, params: object, progress: Progress = {}): Promise<R> {
    if (!progress.onProgress) return this.send<R>(method, params, progress.token);
    nextToken += 1;
    const workDoneToken = `nxops-vscode-${process.pid}-${nextToken}`;
    const listener = this.connection.onProgress(new ProgressType<WorkDoneProgress>(), workDoneToken, progress.onProgress);
    try {
      return await this.send<R>(method, { ...params, workDoneToken }, progress.token);
    } finally {
      listener.dispose();
    }
  }

  /**
   * vscode-jsonrpc sends `(params, undefined)` as a two-element array (which
   * the sidecar rightly rejects), so the token is passed only when there is one.
   */
  private send<R>(method: string, params: object, token?: CancellationToken): Promise<R> {
    return token ? this.connection.sendRequest<R>(method, params, token) : this.connection.sendRequest<R>(method, params);
  }
}
