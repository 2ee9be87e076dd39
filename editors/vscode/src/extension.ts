// The VS Code side: starts `nxops serve --stdio` for the window's folders with
// vscode-languageclient and wires the logic in ./core (which never imports
// vscode and is tested against the real sidecar) to the status bar, commands,
// notifications and progress. Keep decisions out of this file.

import * as vscode from 'vscode';
import { LanguageClient, State, type LanguageClientOptions, type ServerOptions } from 'vscode-languageclient/node';

import { NxopsClient, type Progress } from './core/client';
import { cleanWithPreview, describeCleaned } from './core/clean';
import { EventDecider, type Choice, type UiAction } from './core/events';
import { renderHealth, statusView, type SidecarState } from './core/health';
import { EVENTS, type HealthReport, type WorkDoneProgress } from './core/protocol';
import {
  renderCacheStats,
  renderLogs,
  renderMcpServers,
  renderOptimize,
  renderProcesses,
  renderReset,
  renderSessions,
  renderVerify,
} from './core/render';
import { SECTION, explainStartError, initializationOptions, serverCommand, settingsTab, sidecarSettings } from './core/settings';
import { chooseWorkspace } from './core/workspaces';

let current: NxopsExtension | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const ext = new NxopsExtension();
  current = ext;
  context.subscriptions.push(ext);
  registerCommands(context, ext);
  void ext.start();
}

export function deactivate(): Thenable<void> | undefined {
  return current?.stop();
}

function registerCommands(context: vscode.ExtensionContext, ext: NxopsExtension): void {
  const run = (task: (...args: any[]) => Promise<void>) => (...args: any[]) => ext.guard(() => task(...args));
  context.subscriptions.push(
    vscode.commands.registerCommand('nxops.showHealth', run((ws?: string) => ext.showHealth(ws))),
    vscode.commands.registerCommand('nxops.cacheStats', run(() => ext.cacheStats())),
    vscode.commands.registerCommand('nxops.cacheClean', run(() => ext.cacheClean())),
    vscode.commands.registerCommand('nxops.cacheReset', run(() => ext.cacheReset())),
    vscode.commands.registerCommand('nxops.cacheVerify', run(() => ext.cacheVerify())),
    vscode.commands.registerCommand('nxops.perfOptimize', run(() => ext.perfOptimize())),
    vscode.commands.registerCommand('nxops.processList', run(() => ext.processList())),
    vscode.commands.registerCommand('nxops.processRestart', run((ws?: string, name?: string) => ext.processRestart(ws, name))),
    vscode.commands.registerCommand('nxops.processLogs', run((ws?: string, name?: string) => ext.processLogs(ws, name))),
    vscode.commands.registerCommand('nxops.mcpList', run(() => ext.mcpList())),
    vscode.commands.registerCommand('nxops.sessionList', run(() => ext.sessionList())),
    vscode.commands.registerCommand('nxops.restartSidecar', run(() => ext.restart())),
    vscode.commands.registerCommand('nxops.showOutput', run(async () => ext.output.show())),
  );
}

/** Read-only Markdown documents under the `nxops:` scheme. */
class Reports implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }

  set(name: string, text: string): vscode.Uri {
    const uri = vscode.Uri.from({ scheme: 'nxops', path: `/${name}.md` });
    this.texts.set(uri.toString(), text);
    this.changed.fire(uri);
    return uri;
  }
}

class NxopsExtension implements vscode.Disposable {
  readonly output = vscode.window.createOutputChannel('nxops', { log: true });
  private readonly status = vscode.window.createStatusBarItem('nxops.health', vscode.StatusBarAlignment.Left, 10);
  private readonly reports = new Reports();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly activatedAt = Date.now();
  private languageClient: LanguageClient | undefined;
  private nxops: NxopsClient | undefined;
  private decider = new EventDecider();
  private state: SidecarState = { kind: 'starting' };
  private firstHealthLogged = false;
  /** Closes each open transient notification, by key (events.ts). */
  private readonly transients = new Map<string, () => void>();

  constructor() {
    this.status.name = 'nxops health';
    this.status.command = 'nxops.showHealth';
    this.status.show();
    this.disposables.push(
      this.output,
      this.status,
      vscode.workspace.registerTextDocumentContentProvider('nxops', this.reports),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration(SECTION) && void this.restart()),
    );
    this.render();
  }

  /** Starts the sidecar; a failure is shown in the status bar and as an error with what to fix. */
  async start(): Promise<void> {
    this.setState({ kind: 'starting' });
    const config = vscode.workspace.getConfiguration(SECTION);
    let settings: Record<string, string> = {};
    try {
      settings = sidecarSettings((key) => config.get(key));
      const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      const { command, args } = serverCommand(config.get('binaryPath'), process.env, folder);
      this.output.info(`starting ${command} ${args.join(' ')} with settings ${JSON.stringify(settings)}`);
      const client = new LanguageClient('nxops', 'nxops', serverOptions(command, args), this.clientOptions(settings));
      this.languageClient = client;
      this.nxops = new NxopsClient(client);
      for (const event of EVENTS) client.onNotification(`nxops/${event}`, (params) => this.apply(this.decider.decide(event, params)));
      // Also after the language client restarts a crashed sidecar: subscriptions belong to a session.
      client.onDidChangeState(({ newState }) => this.stateChanged(client, newState));
      await client.start();
    } catch (error) {
      this.failed(explainStartError(error, settings));
    }
  }

  private stateChanged(client: LanguageClient, state: State): void {
    if (client !== this.languageClient) return;
    if (state === State.Running) {
      void this.guard(async () => {
        await this.client().subscribe(EVENTS);
        await this.refreshHealth();
      });
    }
    if (state === State.Stopped && this.state.kind !== 'stopped') {
      this.setState({ kind: 'stopped', reason: 'the sidecar stopped (see the nxops output; "nxops: Restart Sidecar" starts it again)' });
    }
  }

  async stop(): Promise<void> {
    const client = this.languageClient;
    this.languageClient = undefined;
    this.nxops = undefined;
    if (client) await client.stop(5000).catch((e) => this.output.warn(`stopping the sidecar: ${e}`));
  }

  async restart(): Promise<void> {
    await this.stop();
    this.decider = new EventDecider();
    await this.start();
  }

  /** Runs a command, showing its error (with the sidecar's message) instead of failing silently. */
  async guard(task: () => Promise<void>): Promise<void> {
    try {
      await task();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if ((error as { code?: number }).code === -32800) return void vscode.window.showInformationMessage('nxops: cancelled');
      this.output.error(message);
      void vscode.window.showErrorMessage(message.startsWith('nxops') ? message : `nxops: ${message}`);
    }
  }

  dispose(): void {
    for (const key of [...this.transients.keys()]) this.settle(key);
    void this.stop();
    for (const d of this.disposables) d.dispose();
  }

  // --- commands ---

  async showHealth(preferred?: string): Promise<void> {
    const ws = await this.workspace(preferred);
    if (!ws) return;
    const report = await this.client().health(ws);
    this.apply(this.decider.health(report));
    await this.open('health', renderHealth(report));
  }

  async cacheStats(): Promise<void> {
    const ws = await this.workspace();
    if (ws) await this.open('cache-stats', renderCacheStats(await this.client().cacheStats(ws)));
  }

  async cacheClean(): Promise<void> {
    const ws = await this.workspace();
    if (!ws) return;
    const mode = await vscode.window.showQuickPick(
      [
        { label: 'Clean to the limits', description: 'keeps entries used in the last hour', force: false },
        { label: 'Clean to the limits, recent entries too', description: 'force: keeps only a 10 s grace', force: true },
      ],
      { title: 'nxops: clean the Nx cache (a dry run comes first)' },
    );
    if (!mode) return;
    const outcome = await this.withProgress('nxops: cleaning the Nx cache', (progress) =>
      cleanWithPreview(this.client(), { workspace: ws, force: mode.force }, (preview) => this.confirm(preview.question, preview.detail, 'Clean'), progress),
    );
    if (outcome.kind === 'nothing') void vscode.window.showInformationMessage(`nxops: nothing to clean in ${ws}`);
    if (outcome.kind === 'cleaned') void vscode.window.showInformationMessage(describeCleaned(outcome.result));
    await this.refreshHealth();
  }

  async cacheReset(): Promise<void> {
    const ws = await this.workspace();
    if (!ws) return;
    const choice = await vscode.window.showWarningMessage(
      `Reset the Nx cache of ${ws}?`,
      { modal: true, detail: 'Runs the workspace\'s own `nx reset --only-cache` (all: `nx reset`, which also removes Nx\'s database and workspace data).' },
      'Reset Cache',
      'Reset All',
    );
    if (!choice) return;
    const result = await this.withProgress('nxops: resetting the Nx cache', (progress) =>
      this.client().cacheReset({ workspace: ws, all: choice === 'Reset All' }, progress),
    );
    await this.open('cache-reset', renderReset(result));
    await this.refreshHealth();
  }

  async cacheVerify(): Promise<void> {
    const ws = await this.workspace();
    if (!ws) return;
    const result = await this.withProgress('nxops: checking the Nx cache', (p) => this.client().cacheVerify({ workspace: ws }, p));
    await this.open('cache-verify', renderVerify(result));
    if (result.problems.length === 0) return;
    const question = `${result.problems.length} cache entries would be restored wrong. Evict them (the next run is a clean miss)?`;
    if (!(await this.confirm(question, '', 'Evict'))) return;
    const fixed = await this.withProgress('nxops: evicting broken entries', (p) => this.client().cacheVerify({ workspace: ws, fix: true }, p));
    await this.open('cache-verify', renderVerify(fixed));
  }

  async perfOptimize(): Promise<void> {
    const ws = await this.workspace();
    if (!ws) return;
    const result = await this.withProgress('nxops: running maintenance', (p) => this.client().perfOptimize(ws, p));
    await this.open('perf-optimize', renderOptimize(result));
    await this.refreshHealth();
  }

  async processList(): Promise<void> {
    const ws = await this.workspace();
    if (ws) await this.open('processes', renderProcesses(await this.client().processes(ws)));
  }

  async processRestart(preferred?: string, name?: string): Promise<void> {
    const ws = await this.workspace(preferred);
    const process = ws && (name ?? (await this.pickProcess(ws)));
    if (!ws || !process) return;
    const view = await this.withProgress(`nxops: restarting ${process}`, (p) => this.client().processRestart(ws, process, p));
    void vscode.window.showInformationMessage(`nxops: ${view.name} is ${view.state} (pid ${view.pid ?? '-'})`);
  }

  async processLogs(preferred?: string, name?: string): Promise<void> {
    const ws = await this.workspace(preferred);
    const process = ws && (name ?? (await this.pickProcess(ws)));
    if (ws && process) await this.open(`logs-${process}`, renderLogs(await this.client().processLogs(ws, process)));
  }

  async sessionList(): Promise<void> {
    const ws = await this.workspace();
    if (ws) await this.open('sessions', renderSessions(await this.client().sessions(ws)));
  }

  async mcpList(): Promise<void> {
    const ws = await this.workspace();
    if (ws) await this.open('mcp-servers', renderMcpServers(await this.client().mcpServers(ws)));
  }

  // --- plumbing ---

  private clientOptions(settings: Record<string, string>): LanguageClientOptions {
    return {
      documentSelector: [],
      outputChannel: this.output,
      initializationOptions: initializationOptions(settings),
      // No retry: start() rejects, and failed() says which setting to fix.
      initializationFailedHandler: () => false,
    };
  }

  private client(): NxopsClient {
    if (!this.nxops) throw new Error('nxops: the sidecar is not running (see the nxops output, or run "nxops: Restart Sidecar")');
    return this.nxops;
  }

  private async workspace(preferred?: string): Promise<string | undefined> {
    const attached = await this.client().workspaces();
    return chooseWorkspace(attached, (choices) => vscode.window.showQuickPick(choices, { title: 'nxops: which workspace?' }), preferred);
  }

  private async pickProcess(ws: string): Promise<string | undefined> {
    const list = await this.client().processes(ws);
    if (list.processes.length === 0) throw new Error(`nxops: no supervised process in ${ws}`);
    const items = list.processes.map((p) => ({ label: p.name, description: `${p.state}${p.pid ? `, pid ${p.pid}` : ''}`, detail: p.command }));
    return (await vscode.window.showQuickPick(items, { title: 'nxops: which process?' }))?.label;
  }

  private async refreshHealth(): Promise<void> {
    const client = this.client();
    const attached = await client.workspaces();
    const reports = new Map<string, HealthReport | { error: string }>();
    for (const ws of attached) {
      try {
        const report = await client.health(ws.root);
        reports.set(ws.root, report);
        this.apply(this.decider.health(report).filter((a) => a.kind !== 'health'));
      } catch (error) {
        reports.set(ws.root, { error: error instanceof Error ? error.message : String(error) });
      }
    }
    this.setState({ kind: 'running', reports });
  }

  private apply(actions: UiAction[]): void {
    for (const action of actions) {
      if (action.kind === 'health') this.setReport(action.report);
      if (action.kind === 'log') this.output.info(action.message);
      if (action.kind === 'refresh') void this.guard(() => this.refreshHealth());
      if (action.kind === 'warning') void this.warn(action.message, action.choices);
      if (action.kind === 'transient') this.transient(action.key, action.message);
      if (action.kind === 'settle') this.settle(action.key);
    }
  }

  /** A notification VS Code can close (a warning cannot be): replaced under its key, closed by settle. */
  private transient(key: string, message: string): void {
    this.settle(key);
    this.output.warn(message);
    void vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: message }, () =>
      new Promise<void>((resolve) => this.transients.set(key, resolve)),
    );
  }

  private settle(key: string): void {
    this.transients.get(key)?.();
    this.transients.delete(key);
  }

  private async warn(message: string, choices: Choice[]): Promise<void> {
    this.output.warn(message);
    const picked = await vscode.window.showWarningMessage(message, ...choices.map((c) => c.title));
    const choice = choices.find((c) => c.title === picked);
    if (!choice) return;
    const args = 'name' in choice ? [choice.workspace, choice.name] : [choice.workspace];
    await vscode.commands.executeCommand(choice.command, ...args);
  }

  private setReport(report: HealthReport): void {
    const reports = this.state.kind === 'running' ? new Map(this.state.reports) : new Map();
    reports.set(report.workspace, report);
    this.setState({ kind: 'running', reports });
  }

  private setState(state: SidecarState): void {
    this.state = state;
    this.render();
    const shown = state.kind === 'running' && [...state.reports.values()].some((r) => 'rating' in r);
    if (shown && !this.firstHealthLogged) {
      this.firstHealthLogged = true;
      this.output.info(`first health shown ${Date.now() - this.activatedAt} ms after activation`);
    }
  }

  private render(): void {
    const view = statusView(this.state);
    this.status.text = view.text;
    this.status.tooltip = view.tooltip;
    this.status.backgroundColor =
      view.level === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : view.level === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  private failed(reason: string): void {
    this.output.error(reason);
    this.setState({ kind: 'stopped', reason });
    const tab = settingsTab(vscode.env.remoteName);
    void vscode.window.showErrorMessage(`${reason}${tab.hint}`, 'Open Settings', 'Show Output').then((choice) => {
      if (choice === 'Open Settings') void vscode.commands.executeCommand(tab.command, tab.arg);
      if (choice === 'Show Output') this.output.show();
    });
  }

  private async confirm(question: string, detail: string, action: string): Promise<boolean> {
    return (await vscode.window.showWarningMessage(question, { modal: true, detail }, action)) === action;
  }

  /** Runs `task` under a cancellable notification that shows the sidecar's `$/progress`. */
  private withProgress<T>(title: string, task: (progress: Progress) => Promise<T>): Thenable<T> {
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, (ui, token) => {
      let done = 0;
      const onProgress = (value: WorkDoneProgress) => {
        const percentage = 'percentage' in value && value.percentage !== undefined ? value.percentage : undefined;
        const increment = percentage !== undefined ? Math.max(0, percentage - done) : undefined;
        if (percentage !== undefined) done = percentage;
        ui.report({ message: value.message, increment });
      };
      return task({ onProgress, token });
    });
  }

  private async open(name: string, markdown: string): Promise<void> {
    const uri = this.reports.set(name, markdown);
    try {
      await vscode.commands.executeCommand('markdown.showPreview', uri);
    } catch {
      await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(uri), { preview: true });
    }
  }
}

function serverOptions(command: string, args: string[]): ServerOptions {
  return { command, args, options: { env: process.env } };
}
