// Cleaning the cache: always a dry run first, shown to the user, and the real
// clean only after they confirm what the dry run listed.

import type { NxopsClient, Progress } from './client';
import { formatBytes } from './format';
import type { CleanParams, CleanResult } from './protocol';

/** What the confirmation shows: a one-line question and the detail. */
export interface CleanPreview {
  /** Nothing qualifies: no confirmation is asked. */
  nothingToDo: boolean;
  question: string;
  detail: string;
}

/** How a clean went. */
export type CleanOutcome =
  | { kind: 'nothing'; preview: CleanResult }
  | { kind: 'declined'; preview: CleanResult }
  | { kind: 'cleaned'; preview: CleanResult; result: CleanResult };

/**
 * Dry run, then `confirm` (shown the preview), then the clean with the same
 * parameters. `confirm` is not asked when the dry run found nothing.
 */
export async function cleanWithPreview(
  client: NxopsClient,
  params: CleanParams,
  confirm: (preview: CleanPreview) => PromiseLike<boolean>,
  progress: Progress = {},
): Promise<CleanOutcome> {
  const preview = await client.cacheClean({ ...params, dryRun: true }, progress);
  const shown = describePreview(preview);
  if (shown.nothingToDo) return { kind: 'nothing', preview };
  if (!(await confirm(shown))) return { kind: 'declined', preview };
  const result = await client.cacheClean({ ...params, dryRun: false }, progress);
  return { kind: 'cleaned', preview, result };
}

/** The dry run in words: what would go, why, and what would be kept. */
export function describePreview(preview: CleanResult): CleanPreview {
  const count = preview.removed.length + preview.unlisted;
  const limits = `limits ${formatBytes(preview.maxSize)}, ${Math.round(preview.maxAgeMs / 86_400_000)}d`;
  const reasons = Object.entries(preview.byReason)
    .map(([reason, t]) => `${reason}: ${t.entries} (${formatBytes(t.bytes)})`)
    .join(', ');
  const kept = preview.skipped.length ? `\n${preview.skipped.length} kept although they qualify (${keptWhy(preview)}).` : '';
  if (count === 0) {
    return {
      nothingToDo: true,
      question: `Nothing to clean (${limits}).`,
      detail: `The cache holds ${preview.before.entries} entries, ${formatBytes(preview.before.bytes)}.${kept}`,
    };
  }
  return {
    nothingToDo: false,
    question: `Remove ${count} cache entries, ${formatBytes(preview.bytesFreed)}?`,
    detail:
      `By reason: ${reasons} (${limits}).\n` +
      `Cache before: ${preview.before.entries} entries, ${formatBytes(preview.before.bytes)}; ` +
      `after: ${preview.after.entries} entries, ${formatBytes(preview.after.bytes)}.${kept}`,
  };
}

function keptWhy(preview: CleanResult): string {
  const counts = new Map<string, number>();
  for (const s of preview.skipped) counts.set(s.why, (counts.get(s.why) ?? 0) + 1);
  return [...counts.entries()].map(([why, n]) => `${n} ${why}`).join(', ');
}

/** The clean's result in one line. */
export function describeCleaned(result: CleanResult): string {
  const cancelled = result.cancelled ? ' (cancelled part way)' : '';
  // The clean re-checks each entry, so it can keep some the dry run listed
  // (used meanwhile, or within the 10-second grace that even `force` keeps).
  const kept = result.skipped.length ? ` ${result.skipped.length} kept (${keptWhy(result)}).` : '';
  return (
    `nxops removed ${result.entries} cache entries, ${formatBytes(result.bytesFreed)}${cancelled}; ` +
    `the cache now holds ${result.after.entries} entries, ${formatBytes(result.after.bytes)}.${kept}`
  );
}
