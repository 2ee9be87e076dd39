// Which workspace a command acts on when the window has several.

import { baseName } from './format';
import type { WorkspaceInfo } from './protocol';

/** An entry of the workspace picker. */
export interface WorkspaceChoice {
  label: string;
  description: string;
  root: string;
}

/**
 * The workspace to act on: `preferred` if attached, the only one if there is
 * one, else what `ask` picks among them (undefined: the user dismissed it).
 * Throws when none is attached, with what to do about it.
 */
export async function chooseWorkspace(
  attached: WorkspaceInfo[],
  ask: (choices: WorkspaceChoice[]) => PromiseLike<WorkspaceChoice | undefined>,
  preferred?: string,
): Promise<string | undefined> {
  if (attached.length === 0) {
    throw new Error('nxops: no Nx workspace is attached (open a folder with an nx.json)');
  }
  if (preferred && attached.some((w) => w.root === preferred)) return preferred;
  if (attached.length === 1) return attached[0].root;
  const choices = attached.map((w) => ({ label: baseName(w.root), description: `${w.root} (${w.role.kind})`, root: w.root }));
  return (await ask(choices))?.root;
}
