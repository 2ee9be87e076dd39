/**
 * Sizes, durations and counts, parsed exactly as the nxops binary parses them
 * (a port of `src/config/units.rs` and `SettingDef::parse` in src/config/mod.rs),
 * with the same error wording, so a value means the same thing in nx.json
 * whichever side reads it.
 *
 * Sizes: `B`, `KB`, `MB`, `GB`, `TB` are 1024-based and the IEC spellings
 * `KiB`..`TiB` mean the same (units are case-insensitive); a plain number is
 * bytes. Durations need a unit (`ms`, `s`, `m`, `h`, `d`, `w`, case-sensitive)
 * and may be compound (`1h30m`, `1h 30m`). Counts are whole numbers.
 */

/** u64::MAX as an f64, which is how the binary bounds sizes and seconds. */
const U64_LIMIT = 2 ** 64;

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kb: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mb: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gb: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tb: 2 ** 40,
  tib: 2 ** 40,
};

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** The result of a parse: the value, or the reason it was refused. */
export type Parsed = { ok: true; value: number } | { ok: false; why: string };

/** Why text that does not start with digits is refused, worded as the binary words it. */
function notANumber(text: string): string {
  const why = text.startsWith('-') ? 'cannot be negative' : 'does not start with a number';
  return `${rustDebug(text)} ${why}`;
}

/** Parses "5GB", "512 MiB", "1.5 GB" or "1048576" into bytes. */
export function parseSize(text: string): Parsed {
  const trimmed = rustTrim(text);
  const [digits, rest] = splitDigits(trimmed);
  if (digits === '') {
    return refuse(notANumber(trimmed));
  }
  const number = Number(digits);
  if (Number.isNaN(number)) {
    return refuse(`${rustDebug(digits)} is not a number`);
  }
  const unit = rustTrim(rest);
  const multiplier = SIZE_UNITS[asciiLowercase(unit)];
  if (multiplier === undefined) {
    return refuse(`unknown size unit ${rustDebug(unit)} (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)`);
  }
  const bytes = number * multiplier;
  return bytes > U64_LIMIT ? refuse('size is too large') : { ok: true, value: Math.round(bytes) };
}

/** Parses "7d", "30s", "500ms", "1h30m" into milliseconds. */
export function parseDuration(text: string): Parsed {
  const trimmed = rustTrim(text);
  if (trimmed === '') {
    return refuse('empty duration');
  }
  let seconds = 0;
  let rest = trimmed;
  while (rest !== '') {
    const [digits, afterDigits] = splitDigits(rest);
    if (digits === '') {
      return refuse(notANumber(rest));
    }
    const number = Number(digits);
    if (Number.isNaN(number)) {
      return refuse(`${rustDebug(digits)} is not a number`);
    }
    const afterSpace = rustTrimStart(afterDigits);
    const unit = /^[A-Za-z]*/.exec(afterSpace)![0];
    if (unit === '') {
      return refuse(`${rustDebug(trimmed)} needs a unit (ms, s, m, h, d or w), for example "30s"`);
    }
    const factor = DURATION_UNITS[unit];
    if (factor === undefined) {
      return refuse(`unknown duration unit ${rustDebug(unit)} (use ms, s, m, h, d or w)`);
    }
    seconds += number * factor;
    if (!(seconds < U64_LIMIT)) {
      return refuse('duration is too large');
    }
    rest = rustTrimStart(afterSpace.slice(unit.length));
  }
  return { ok: true, value: Math.round(seconds * 1000) };
}

/** Parses a whole number the way Rust's `u64::from_str` does after a trim ("+5" is fine, "-0" is not). */
export function parseCount(text: string): Parsed {
  const trimmed = rustTrim(text);
  if (!/^\+?[0-9]+$/.test(trimmed) || BigInt(trimmed.replace('+', '')) >= BigInt(U64_LIMIT)) {
    return refuse(`${rustDebug(text)} is not a whole number`);
  }
  return { ok: true, value: Number(trimmed.replace('+', '')) };
}

/**
 * A string as Rust's `{:?}` prints it: in double quotes, with `\\`, `\"`, `\n`,
 * `\r`, `\t`, `\0` escaped and other control characters as `\u{hex}`.
 */
export function rustDebug(text: string): string {
  let out = '"';
  for (const char of text) {
    out += escapeChar(char);
  }
  return out + '"';
}

function escapeChar(char: string): string {
  switch (char) {
    case '"':
      return '\\"';
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\0':
      return '\\0';
  }
  return /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(char) ? `\\u{${char.codePointAt(0)!.toString(16)}}` : char;
}

function refuse(why: string): Parsed {
  return { ok: false, why };
}

function splitDigits(text: string): [string, string] {
  const digits = /^[0-9.]*/.exec(text)![0];
  return [digits, text.slice(digits.length)];
}

/** Rust's `str::trim` removes Unicode White_Space, which differs from JS `trim` (BOM). */
function rustTrim(text: string): string {
  return text.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
}

function rustTrimStart(text: string): string {
  return text.replace(/^\p{White_Space}+/u, '');
}

function asciiLowercase(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}
