// The health rating in the status bar and the health report as a document.

import { baseName, formatDuration } from './format';
import { RATINGS, type HealthReport, type Rating } from './protocol';

/** What the status bar item shows. `level` picks its colours. */
export interface StatusView {
  text: string;
  tooltip: string;
  level: 'ok' | 'warning' | 'error' | 'idle';
}

/** The sidecar's state as the status bar knows it. */
export type SidecarState =
  | { kind: 'starting' }
  | { kind: 'stopped'; reason: string }
  | { kind: 'running'; reports: Map<string, HealthReport | { error: string }> };

const ICONS: Record<Rating, string> = {
  Excellent: '$(pass)',
  Good: '$(pass)',
  Fair: '$(warning)',
  Poor: '$(warning)',
  Critical: '$(error)',
};

/** Worse ratings sort later: `Critical` is the worst. */
export function ratingRank(rating: Rating): number {
  return RATINGS.indexOf(rating);
}

/** The report with the worst rating (lowest score among equals), if any. */
export function worstReport(reports: Iterable<HealthReport>): HealthReport | undefined {
  let worst: HealthReport | undefined;
  for (const report of reports) {
    const worse =
      !worst ||
      ratingRank(report.rating) > ratingRank(worst.rating) ||
      (report.rating === worst.rating && report.score < worst.score);
    if (worse) worst = report;
  }
  return worst;
}

/** The status bar item for the sidecar's state: the worst workspace's rating, each one in the tooltip. */
export function statusView(state: SidecarState): StatusView {
  if (state.kind === 'starting') return { text: '$(sync~spin) nxops', tooltip: 'nxops: starting the sidecar', level: 'idle' };
  if (state.kind === 'stopped') return { text: '$(circle-slash) nxops', tooltip: `nxops: ${state.reason}`, level: 'error' };
  if (state.reports.size === 0) {
    return { text: '$(circle-slash) nxops', tooltip: 'nxops: no Nx workspace (no nx.json) in the open folders', level: 'idle' };
  }
  const reports = [...state.reports.values()].filter((r): r is HealthReport => 'rating' in r);
  const failed = [...state.reports.entries()].filter(([, r]) => 'error' in r);
  const worst = worstReport(reports);
  const lines = [...state.reports.entries()].map(([root, r]) =>
    'error' in r ? `${baseName(root)}: health unknown (${r.error})` : `${baseName(root)}: ${r.rating} (${r.score}/100)${firstReason(r)}`,
  );
  const tooltip = `nxops health (click for the report)\n${lines.join('\n')}`;
  if (!worst) return { text: '$(question) nxops', tooltip, level: 'warning' };
  const text = `${ICONS[worst.rating]} nxops: ${worst.rating}${failed.length ? ' $(question)' : ''}`;
  return { text, tooltip, level: levelOf(worst.rating) };
}

/** "just now" under a second (a fresh check's age is noise), else "2m 5s ago". */
export function checkedAgo(ageMs: number): string {
  return ageMs < 1000 ? 'just now' : `${formatDuration(ageMs)} ago`;
}

function firstReason(report: HealthReport): string {
  return report.reasons.length ? `: ${report.reasons[0]}` : '';
}

function levelOf(rating: Rating): StatusView['level'] {
  if (rating === 'Critical') return 'error';
  if (rating === 'Fair' || rating === 'Poor') return 'warning';
  return 'ok';
}

/** The health report as Markdown: the rating, each component's score and its reasons. */
export function renderHealth(report: HealthReport, now: number = Date.now()): string {
  const lines = [
    `# nxops health: ${report.rating} (${report.score}/100)`,
    '',
    `Workspace \`${report.workspace}\`, checked ${checkedAgo(now - report.checkedAt)}.`,
    '',
    '| component | score | reasons |',
    '|---|---:|---|',
    ...report.components.map((c) => `| ${c.name} | ${c.score} | ${c.reasons.join('; ') || '-'} |`),
    '',
  ];
  if (report.reasons.length) lines.push('## Reasons, worst first', '', ...report.reasons.map((r) => `- ${r}`), '');
  lines.push('Ratings: 90-100 Excellent, 75-89 Good, 50-74 Fair, 25-49 Poor, 0-24 Critical (the worst component rates the workspace).');
  return lines.join('\n') + '\n';
}
