/**
 * The plugin's only voice: `console.warn` lines prefixed `[nxops]`, each topic
 * at most once per process, so a problem that repeats on every run (no binary,
 * a sidecar that does not answer) is said once and never floods Nx's output.
 * Messages name paths and problems, never environment values other than ours.
 */

/** What a warning is about; each is printed at most once per process. */
export type WarningTopic = 'binary' | 'nxops-bin' | 'sidecar' | 'maintenance' | 'hook' | 'options';

const warned = new Set<WarningTopic>();

export function warnOnce(topic: WarningTopic, message: string): void {
  if (warned.has(topic)) {
    return;
  }
  warned.add(topic);
  console.warn(`[nxops] ${message}`);
}

/** A thrown value as one line of text. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
