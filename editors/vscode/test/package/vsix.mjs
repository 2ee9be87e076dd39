// Reads a .vsix (a zip) without dependencies, and checks what it must hold:
// the compiled extension, its runtime dependencies, and a manifest that
// declares exactly the commands the code registers.

import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

/** The files of a zip as a Map of name -> () => Buffer. */
export function readZip(path) {
  const zip = readFileSync(path);
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error(`${path} is not a zip file (no end of central directory)`);
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const files = new Map();
  for (let i = 0; i < count; i += 1) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`${path}: bad central directory entry ${i}`);
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extra = zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    files.set(name, () => {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + size);
      return method === 8 ? inflateRawSync(data) : Buffer.from(data);
    });
    at += 46 + nameLength + extra;
  }
  return files;
}

/** Command ids registered in compiled JS: every `registerCommand('id'`. */
export function registeredCommands(js) {
  return [...js.matchAll(/registerCommand\(\s*['"`]([^'"`]+)['"`]/g)].map((m) => m[1]);
}

/** What is wrong with a package's files (empty: nothing). */
export function vsixProblems(files) {
  const problems = [];
  const text = (name) => (files.has(name) ? files.get(name)().toString('utf8') : undefined);
  const manifestText = text('extension/package.json');
  if (!manifestText) return ['extension/package.json is missing'];
  const manifest = JSON.parse(manifestText);
  const main = `extension/${manifest.main.replace(/^\.\//, '')}`;
  const js = text(main);
  if (!js) return [...problems, `the compiled extension ${main} is missing`];
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    if (!files.has(`extension/node_modules/${dep}/package.json`)) problems.push(`runtime dependency ${dep} is missing`);
  }
  for (const required of js.matchAll(/require\("(\.\/[^"]+)"\)/g)) {
    const path = `extension/out/${required[1].slice(2)}.js`;
    if (!files.has(path)) problems.push(`${main} requires ${required[1]}, but ${path} is missing`);
  }
  const registered = registeredCommands(js);
  const declared = (manifest.contributes?.commands ?? []).map((c) => c.command);
  if (registered.length === 0) problems.push(`${main} registers no command`);
  for (const id of registered) if (!declared.includes(id)) problems.push(`${id} is registered but not declared in contributes.commands`);
  for (const id of declared) if (!registered.includes(id)) problems.push(`${id} is declared in contributes.commands but never registered`);
  for (const c of manifest.contributes?.commands ?? []) if (!c.title) problems.push(`${c.command} has no title`);
  for (const name of files.keys()) {
    if (/^extension\/(src|test)\//.test(name) || name.endsWith('.ts') && !name.endsWith('.d.ts')) problems.push(`${name} should not be packaged`);
  }
  return problems;
}
