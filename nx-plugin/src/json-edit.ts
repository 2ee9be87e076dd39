/**
 * Small edits to JSON files that leave every other byte alone: the init
 * generator adds one entry to nx.json and a few scripts to package.json
 * without reformatting the rest (inline arrays stay inline, comments and
 * trailing commas in nx.json, which Nx accepts, stay where they are).
 *
 * Positions come from a copy of the text with comments and trailing commas
 * blanked out by spaces, so offsets in the copy are offsets in the original.
 * New entries use the file's own indentation (its first indented line; two
 * spaces if it has none) and line endings (CRLF if it has any).
 */

/** A value's span in the text, with its members or items. */
export interface JsonNode {
  readonly kind: 'object' | 'array' | 'scalar';
  /** Offset of the first character. */
  readonly start: number;
  /** Offset just past the last character. */
  readonly end: number;
  readonly members: ReadonlyArray<{ readonly key: string; readonly value: JsonNode }>;
  readonly items: readonly JsonNode[];
}

/** Parses JSON with comments and trailing commas (JSONC, as Nx reads nx.json). */
export function parseJsonc(text: string): unknown {
  return JSON.parse(blankJsonc(text));
}

/** The syntax tree of a JSONC text (throws when it is not valid). */
export function parseTree(text: string): JsonNode {
  const blank = blankJsonc(text);
  JSON.parse(blank);
  return new Scanner(blank).value();
}

/** `text` with `"key": value` added as the last member of the object at `node`. */
export function addMember(text: string, node: JsonNode, key: string, value: unknown): string {
  return insertChild(text, node, (render) => `${JSON.stringify(key)}: ${render(value)}`);
}

/** `text` with `value` added as the last item of the array at `node`. */
export function addItem(text: string, node: JsonNode, value: unknown): string {
  return insertChild(text, node, (render) => render(value));
}

/** The member `key` of an object node. */
export function member(node: JsonNode, key: string): JsonNode | undefined {
  return node.members.find((m) => m.key === key)?.value;
}

type Render = (value: unknown) => string;

function insertChild(text: string, node: JsonNode, entry: (render: Render) => string): string {
  const children = node.kind === 'object' ? node.members.map((m) => m.value) : node.items;
  const last = children[children.length - 1];
  const multiLine = text.slice(node.start, node.end).includes('\n');
  if (last !== undefined && !multiLine) {
    return splice(text, last.end, `, ${entry(inline)}`);
  }
  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const unit = indentUnit(text);
  const outer = lineIndent(text, node.start);
  const inner = children.length > 0 ? childIndent(text, children[0]!, outer + unit) : outer + unit;
  const render: Render = (value) => JSON.stringify(value, null, unit).replace(/\n/g, `${nl}${inner}`);
  if (last !== undefined) {
    // After a trailing comma (and a comment closing its line), the entry goes on the next line.
    const tail = /^[ \t]*,[ \t]*(\/\/[^\r\n]*|\/\*.*?\*\/[ \t]*)?(?=\r?\n)/.exec(text.slice(last.end));
    if (tail !== null) {
      return splice(text, last.end + tail[0].length, `${nl}${inner}${entry(render)}`);
    }
    return splice(text, last.end, `,${nl}${inner}${entry(render)}`);
  }
  // An empty container: keep whatever it held (comments), then the entry on its own line.
  const closing = node.end - 1;
  const head = text.slice(0, closing).replace(/\s+$/, '');
  return `${head}${nl}${inner}${entry(render)}${nl}${outer}${text.slice(closing)}`;
}

/** One-line rendering for inline containers: `{"plugin": "x", "options": {}}`. */
function inline(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(inline).join(', ')}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${inline(v)}`);
    return `{${entries.join(', ')}}`;
  }
  return JSON.stringify(value);
}

function splice(text: string, at: number, insert: string): string {
  return text.slice(0, at) + insert + text.slice(at);
}

/** The leading whitespace of the line holding `offset`. */
function lineIndent(text: string, offset: number): string {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart))![0];
}

/** The indentation of an existing child, when it starts its own line. */
function childIndent(text: string, child: JsonNode, fallback: string): string {
  const lineStart = text.lastIndexOf('\n', child.start - 1) + 1;
  const before = text.slice(lineStart, child.start);
  // For an object member the node is its value; the line's leading whitespace is the member's.
  const indent = /^[ \t]*/.exec(before)![0];
  return lineStart > 0 && indent.length > 0 ? indent : fallback;
}

/** The file's indentation step: its first indented line's whitespace, else two spaces. */
function indentUnit(text: string): string {
  const match = /\n([ \t]+)[^\s]/.exec(text);
  return match ? match[1]! : '  ';
}

/** Comments and trailing commas replaced by spaces (newlines kept), outside strings. */
function blankJsonc(text: string): string {
  const out = text.split('');
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      i = stringEnd(text, i);
    } else if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      i = blank(out, i, end < 0 ? text.length : end);
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = blank(out, i, end < 0 ? text.length : end + 2);
    } else {
      i += 1;
    }
  }
  return blankTrailingCommas(out.join(''));
}

function blankTrailingCommas(text: string): string {
  const out = text.split('');
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      i = stringEnd(text, i);
      continue;
    }
    if (c === ',' && /^\s*[}\]]/.test(text.slice(i + 1))) {
      out[i] = ' ';
    }
    i += 1;
  }
  return out.join('');
}

function blank(out: string[], from: number, to: number): number {
  for (let j = from; j < to; j++) {
    if (out[j] !== '\n') out[j] = ' ';
  }
  return to;
}

/** Offset just past the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length && text[i] !== '"') {
    i += text[i] === '\\' ? 2 : 1;
  }
  return i + 1;
}

/** A recursive descent over already validated, comment-free JSON, recording spans. */
class Scanner {
  private pos = 0;

  constructor(private readonly text: string) {}

  value(): JsonNode {
    this.skipSpace();
    const start = this.pos;
    const c = this.text[start];
    if (c === '{') return this.container('object', '}', start);
    if (c === '[') return this.container('array', ']', start);
    this.pos = c === '"' ? stringEnd(this.text, start) : this.scalarEnd(start);
    return { kind: 'scalar', start, end: this.pos, members: [], items: [] };
  }

  private container(kind: 'object' | 'array', close: string, start: number): JsonNode {
    const members: Array<{ key: string; value: JsonNode }> = [];
    const items: JsonNode[] = [];
    this.pos += 1;
    this.skipSpace();
    while (this.text[this.pos] !== close) {
      if (kind === 'object') {
        const keyEnd = stringEnd(this.text, this.pos);
        const key = JSON.parse(this.text.slice(this.pos, keyEnd)) as string;
        this.pos = this.text.indexOf(':', keyEnd) + 1;
        members.push({ key, value: this.value() });
      } else {
        items.push(this.value());
      }
      this.skipSpace();
      if (this.text[this.pos] === ',') this.pos += 1;
      this.skipSpace();
    }
    this.pos += 1;
    return { kind, start, end: this.pos, members, items };
  }

  private scalarEnd(start: number): number {
    const match = /[\s,\]}]/.exec(this.text.slice(start));
    return match ? start + match.index : this.text.length;
  }

  private skipSpace(): void {
    while (/\s/.test(this.text[this.pos] ?? '')) this.pos += 1;
  }
}
