/**
 * "Did you mean" suggestions, identical to the binary's `config::suggest`:
 * Jaro-Winkler similarity (a port of `strsim::jaro_winkler` 0.11, compared by
 * Unicode scalar values) on ASCII-lowercased names, a score strictly above 0.8,
 * and the last of equally good candidates (Rust's `max_by`).
 */

/** The known name closest to `given`, if it is close enough to be a typo. */
export function suggest(given: string, known: readonly string[]): string | undefined {
  let best: { score: number; name: string } | undefined;
  for (const name of known) {
    const score = jaroWinkler(asciiLowercase(given), asciiLowercase(name));
    if (score > 0.8 && (best === undefined || score >= best.score)) {
      best = { score, name };
    }
  }
  return best?.name;
}

/** Jaro similarity with Winkler's boost for a common prefix of up to 4 characters. */
export function jaroWinkler(a: string, b: string): number {
  const left = Array.from(a);
  const right = Array.from(b);
  const sim = jaro(left, right);
  if (sim <= 0.7) {
    return sim;
  }
  let prefix = 0;
  while (prefix < 4 && prefix < left.length && prefix < right.length && left[prefix] === right[prefix]) {
    prefix += 1;
  }
  return sim + 0.1 * prefix * (1 - sim);
}

function jaro(a: string[], b: string[]): number {
  if (a.length === 0 && b.length === 0) {
    return 1;
  }
  if (a.length === 0 || b.length === 0) {
    return 0;
  }
  const range = Math.max(0, Math.floor(Math.max(a.length, b.length) / 2) - 1);
  const aFlags = new Array<boolean>(a.length).fill(false);
  const bFlags = new Array<boolean>(b.length).fill(false);
  let matches = 0;
  for (let i = 0; i < a.length; i++) {
    const low = i > range ? i - range : 0;
    const high = Math.min(b.length, i + range + 1);
    for (let j = low; j < high; j++) {
      if (!bFlags[j] && a[i] === b[j]) {
        aFlags[i] = true;
        bFlags[j] = true;
        matches += 1;
        break;
      }
    }
  }
  if (matches === 0) {
    return 0;
  }
  const transpositions = countTranspositions(a, aFlags, b, bFlags) / 2;
  return (matches / a.length + matches / b.length + (matches - Math.floor(transpositions)) / matches) / 3;
}

function countTranspositions(a: string[], aFlags: boolean[], b: string[], bFlags: boolean[]): number {
  let count = 0;
  let j = 0;
  for (let i = 0; i < a.length; i++) {
    if (!aFlags[i]) {
      continue;
    }
    while (!bFlags[j]) {
      j += 1;
    }
    if (a[i] !== b[j]) {
      count += 1;
    }
    j += 1;
  }
  return count;
}

function asciiLowercase(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase());
}
