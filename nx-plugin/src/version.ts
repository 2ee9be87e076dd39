/** The plugin's version, from its package.json (the same as the nxops crate's). */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const PLUGIN_VERSION: string = (
  JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf-8')) as { version: string }
).version;
