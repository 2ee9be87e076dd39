// The sidecar's answers as Markdown documents, shown read-only in the editor.

import { formatBytes, formatDuration, formatPercent } from './format';
import type { CacheStats, McpServers, OptimizeResult, ProcessList, ProcessLogs, ResetResult, SessionList, VerifyResult } from './protocol';

function table(head: string[], rows: (string | number)[][]): string[] {
  const align = head.map((h) => (h.endsWith(' ') ? '---:' : '---'));
  return [
    `| ${head.map((h) => h.trim()).join(' | ')} |`,
    `|${align.join('|')}|`,
    ...rows.map((r) => `| ${r.map((c) => String(c).replace(/\|/g, '\\|')).join(' | ')} |`),
  ];
}

export function renderCacheStats(stats: CacheStats): string {
  const hit = stats.hitRate;
  const lines = [
    '# Nx cache',
    '',
    `- folder: \`${stats.cacheDir}\``,
    `- database: \`${stats.dbFile ?? '-'}\``,
    `- entries: ${stats.entries}`,
    `- size: ${formatBytes(stats.bytes)} of ${formatBytes(stats.maxSize)} (${formatPercent(stats.utilization)}), max age ${formatDuration(stats.maxAgeMs)}`,
    `- volume: ${stats.volume ? `${formatBytes(stats.volume.freeBytes)} free of ${formatBytes(stats.volume.totalBytes)}` : '-'}`,
    `- hit rate: ${hit ? `${formatPercent(hit.rate)} over ${hit.days} days (${hit.hits} hits, ${hit.executed} executed)` : '-'}`,
    '',
    '## Last used',
    '',
    ...table(['age', 'entries ', 'size '], stats.ages.map((a) => [a.label, a.entries, formatBytes(a.bytes)])),
    '',
    '## Biggest consumers',
    '',
    ...table(['project:target', 'entries ', 'size '], stats.consumers.map((c) => [`${c.project}:${c.target}`, c.entries, formatBytes(c.bytes)])),
  ];
  return lines.join('\n') + '\n';
}

export function renderVerify(result: VerifyResult): string {
  const lines = [
    `# Cache check: ${result.problems.length} problem(s) in ${result.checked} entries`,
    '',
    `- first seen: ${result.recorded} entries (digests recorded for later checks)`,
    `- missing folders: ${result.missingFolders} rows (harmless: Nx treats them as misses)`,
    `- evicted: ${result.fixed}`,
    '',
  ];
  if (result.problems.length) {
    lines.push(...table(['hash', 'task', 'kind', 'detail'], result.problems.map((p) => [p.hash, `${p.project ?? '?'}:${p.target ?? '?'}`, p.kind, p.detail])));
  }
  return lines.join('\n') + '\n';
}

export function renderReset(result: ResetResult): string {
  const how = result.path === 'nx-reset' ? `\`${result.command}\`` : `by hand (${result.fallbackReason ?? 'nx reset failed'})`;
  return [
    `# Cache reset${result.all ? ' (all)' : ''}`,
    '',
    `- done: ${how} in ${formatDuration(result.durationMs)}`,
    ...result.removed.map((path) => `- removed: \`${path}\``),
    '',
  ].join('\n');
}

export function renderOptimize(result: OptimizeResult): string {
  const figures = (f: OptimizeResult['before']) => [f.rating, f.score, formatBytes(f.cacheBytes), f.idleMcpConnections ?? '-'];
  return [
    '# nxops perf optimize',
    '',
    ...result.actions.map((a) => `- ${a.name}: ${a.done}`),
    '',
    ...table(['', 'rating', 'score ', 'cache ', 'idle MCP connections '], [['before', ...figures(result.before)], ['after', ...figures(result.after)]]),
    '',
  ].join('\n');
}

export function renderProcesses(list: ProcessList): string {
  const rows = list.processes.map((p) => [
    p.name,
    p.state,
    p.pid ?? '-',
    formatDuration(p.uptimeMs),
    p.restarts,
    formatBytes(p.rssBytes),
    `${p.cpuPercent.toFixed(1)}%`,
    p.lastExit ? p.lastExit.reason : '-',
  ]);
  const lines = [`# Processes of ${list.workspace}`, ''];
  if (rows.length) lines.push(...table(['name', 'state', 'pid ', 'uptime ', 'restarts ', 'memory ', 'cpu ', 'last exit'], rows));
  else lines.push('No supervised process.');
  lines.push('', `nxops.json: \`${list.config.path}\`, ${list.config.exists ? `trust: ${list.config.trust ?? '-'}` : 'none'}`);
  if (list.config.blocked.length) lines.push(`Blocked until allowed (\`nxops trust\`): ${list.config.blocked.join(', ')}`);
  if (list.config.problem) lines.push(`Problem: ${list.config.problem}`);
  return lines.join('\n') + '\n';
}

export function renderLogs(logs: ProcessLogs): string {
  return [
    `# Logs of ${logs.name}`,
    '',
    `Files: \`${logs.files.stdout}\`, \`${logs.files.stderr}\``,
    '',
    '## stdout',
    '',
    '```',
    ...logs.stdout,
    '```',
    '',
    '## stderr',
    '',
    '```',
    ...logs.stderr,
    '```',
    '',
  ].join('\n');
}

export function renderMcpServers(servers: McpServers): string {
  const rows = servers.servers.map((s) => [
    s.name,
    s.transport,
    s.pooled ? 'yes' : `no${s.reason ? ` (${s.reason})` : ''}`,
    s.pool?.busy ?? '-',
    s.pool?.idle ?? '-',
    s.pool?.medianAcquireUs != null ? `${s.pool.medianAcquireUs}us` : '-',
    s.sourceKind,
  ]);
  const lines = [`# MCP servers of ${servers.workspace}`, ''];
  if (rows.length) lines.push(...table(['name', 'transport', 'pooled', 'busy ', 'idle ', 'acquire ', 'source'], rows));
  else lines.push('No MCP server configured (.mcp.json, .vscode/mcp.json, .cursor/mcp.json, Claude Desktop).');
  if (servers.problems.length) lines.push('', '## Problems', '', ...servers.problems.map((p) => `- ${p}`));
  if (!servers.sidecar) lines.push('', 'No sidecar owns this workspace: nothing is pooled.');
  return lines.join('\n') + '\n';
}

/** `when` as "in 42s" from `now` (ms since the epoch), "-" for never. */
function expiry(when: number | null, now: number): string {
  if (when == null) return '-';
  return when <= now ? 'now' : `in ${formatDuration(when - now)}`;
}

export function renderSessions(list: SessionList, now: number = Date.now()): string {
  const rows = list.sessions.map((s) => [
    s.id,
    s.kind,
    s.state,
    s.clientName ? `${s.clientName}${s.clientVersion ? ` ${s.clientVersion}` : ''}` : '-',
    Object.keys(s.processes).join(', ') || '-',
    s.mcp.join(', ') || '-',
    expiry(s.expiresAt, now),
  ]);
  const lines = [`# Sessions of ${list.workspace}`, ''];
  if (rows.length) lines.push(...table(['id', 'kind', 'state', 'client', 'processes', 'mcp', 'expires'], rows));
  else lines.push('No sessions.');
  if (!list.sidecar) {
    lines.push('', 'No sidecar owns this workspace: these are the sessions saved for the next one.');
  } else {
    const c = list.counts;
    lines.push('', `${c.expiredRecently} expired in the last hour (clients gone without closing), ${c.closedTotal} closed since the sidecar started.`);
  }
  return lines.join('\n') + '\n';
}
