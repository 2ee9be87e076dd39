// Option validation: the values it accepts, each kind of mistake with its exact
// message and nx.json location, and (when a binary is built) the same problems
// worded exactly as the nxops binary words them.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { cleanEnv, dist, realBinary, tempDir, writeFile } from './helpers.mjs';

const { validateOptions, optionsPointer, OptionsError } = dist('options');
const { parseSize, parseDuration, parseCount } = dist('units');
const { jaroWinkler, suggest } = dist('suggest');

const POINTER = 'plugins[0].options';
const SIZE = 'expected a size such as "5GB", "512 MiB" or a number of bytes';
const DURATION = 'expected a duration such as "7d", "30s" or "500ms"';
const COUNT = 'expected a whole number such as 3';
const KNOWN =
  'cache.maxSize, cache.maxAge, cache.autoCleanAt, cache.checkInterval, health.interval, ' +
  'processes.healthInterval, processes.maxRestarts, processes.stopTimeout, sessions.timeout, sessions.namedTimeout';

/** The message validateOptions throws for `options`. */
function problemOf(options, pointer = POINTER) {
  try {
    validateOptions(options, pointer);
  } catch (error) {
    assert.ok(error instanceof OptionsError, `not an OptionsError: ${error}`);
    assert.equal(error.message, `${error.location}: ${error.problem}`);
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(options)}`);
}

// Each mistake with the message the plugin gives (and Nx shows).
const MISTAKES = [
  [null, 'nx.json plugins[0].options: must be an object'],
  [['cache'], 'nx.json plugins[0].options: must be an object'],
  [{ cahce: {} }, 'nx.json plugins[0].options.cahce: unknown section "cahce"; did you mean "cache"?'],
  [{ proceses: {} }, 'nx.json plugins[0].options.proceses: unknown section "proceses"; did you mean "processes"?'],
  [{ zzz: {} }, 'nx.json plugins[0].options.zzz: unknown section "zzz"'],
  [{ cache: '10GB' }, 'nx.json plugins[0].options.cache: must be an object, got "10GB"'],
  [{ cache: [1] }, 'nx.json plugins[0].options.cache: must be an object, got [1]'],
  [
    { cache: { maxSzie: '1GB' } },
    `nx.json plugins[0].options.cache.maxSzie: unknown setting "cache.maxSzie"; did you mean "cache.maxSize"? (known: ${KNOWN})`,
  ],
  [
    { health: { color: 'red' } },
    `nx.json plugins[0].options.health.color: unknown setting "health.color"; did you mean "health.interval"? (known: ${KNOWN})`,
  ],
  [{ cache: { maxSize: true } }, `nx.json plugins[0].options.cache.maxSize: the JSON value true is not valid: ${SIZE}`],
  [{ cache: { maxSize: null } }, `nx.json plugins[0].options.cache.maxSize: the JSON value null is not valid: ${SIZE}`],
  [
    { processes: { maxRestarts: -1 } },
    `nx.json plugins[0].options.processes.maxRestarts: the JSON value -1 is not valid: ${COUNT}`,
  ],
  [
    { processes: { maxRestarts: 1.5 } },
    `nx.json plugins[0].options.processes.maxRestarts: the JSON value 1.5 is not valid: ${COUNT}`,
  ],
  [
    { cache: { maxAge: { days: 7 } } },
    `nx.json plugins[0].options.cache.maxAge: the JSON value {"days":7} is not valid: ${DURATION}`,
  ],
  [
    { cache: { maxSize: '5 gigs' } },
    `nx.json plugins[0].options.cache.maxSize: "5 gigs" is not valid (unknown size unit "gigs" (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)): ${SIZE}`,
  ],
  [
    { cache: { maxSize: 'GB' } },
    `nx.json plugins[0].options.cache.maxSize: "GB" is not valid ("GB" does not start with a number): ${SIZE}`,
  ],
  [
    { cache: { maxSize: '1.2.3GB' } },
    `nx.json plugins[0].options.cache.maxSize: "1.2.3GB" is not valid ("1.2.3" is not a number): ${SIZE}`,
  ],
  [
    { cache: { maxSize: '-5GB' } },
    `nx.json plugins[0].options.cache.maxSize: "-5GB" is not valid ("-5GB" cannot be negative): ${SIZE}`,
  ],
  [
    { processes: { stopTimeout: 5 } },
    `nx.json plugins[0].options.processes.stopTimeout: "5" is not valid ("5" needs a unit (ms, s, m, h, d or w), for example "30s"): ${DURATION}`,
  ],
  [
    { cache: { maxAge: '1h30' } },
    `nx.json plugins[0].options.cache.maxAge: "1h30" is not valid ("1h30" needs a unit (ms, s, m, h, d or w), for example "30s"): ${DURATION}`,
  ],
  [
    { cache: { maxAge: '3 fortnights' } },
    `nx.json plugins[0].options.cache.maxAge: "3 fortnights" is not valid (unknown duration unit "fortnights" (use ms, s, m, h, d or w)): ${DURATION}`,
  ],
  [
    { cache: { maxAge: '7D' } },
    `nx.json plugins[0].options.cache.maxAge: "7D" is not valid (unknown duration unit "D" (use ms, s, m, h, d or w)): ${DURATION}`,
  ],
  [{ cache: { maxAge: '' } }, `nx.json plugins[0].options.cache.maxAge: "" is not valid (empty duration): ${DURATION}`],
  [
    { health: { interval: '30s!' } },
    `nx.json plugins[0].options.health.interval: "30s!" is not valid ("!" does not start with a number): ${DURATION}`,
  ],
  [
    { processes: { maxRestarts: 'three' } },
    `nx.json plugins[0].options.processes.maxRestarts: "three" is not valid ("three" is not a whole number): ${COUNT}`,
  ],
  [
    { processes: { maxRestarts: '-0' } },
    `nx.json plugins[0].options.processes.maxRestarts: "-0" is not valid ("-0" is not a whole number): ${COUNT}`,
  ],
  [
    { cache: { maxSize: '5 G\tB' } },
    `nx.json plugins[0].options.cache.maxSize: "5 G\\tB" is not valid (unknown size unit "G\\tB" (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)): ${SIZE}`,
  ],
];

describe('validateOptions', () => {
  test('accepts every kind of value and returns bytes, milliseconds and counts', () => {
    const values = validateOptions(
      {
        processes: { maxRestarts: 5, stopTimeout: '500ms', healthInterval: '1h 30m' },
        cache: { maxSize: '10GB', maxAge: '1w', autoCleanAt: '+80', checkInterval: '1.5m' },
        health: { interval: '30s' },
      },
      'plugins[3].options',
    );
    assert.deepEqual(
      values.map((v) => [v.key, v.value, v.location]),
      [
        ['cache.autoCleanAt', 80, 'nx.json plugins[3].options.cache.autoCleanAt'],
        ['cache.checkInterval', 90_000, 'nx.json plugins[3].options.cache.checkInterval'],
        ['cache.maxAge', 604_800_000, 'nx.json plugins[3].options.cache.maxAge'],
        ['cache.maxSize', 10 * 2 ** 30, 'nx.json plugins[3].options.cache.maxSize'],
        ['health.interval', 30_000, 'nx.json plugins[3].options.health.interval'],
        ['processes.healthInterval', 5_400_000, 'nx.json plugins[3].options.processes.healthInterval'],
        ['processes.maxRestarts', 5, 'nx.json plugins[3].options.processes.maxRestarts'],
        ['processes.stopTimeout', 500, 'nx.json plugins[3].options.processes.stopTimeout'],
      ],
    );
  });

  test('no options and empty sections are fine', () => {
    assert.deepEqual(validateOptions(undefined, POINTER), []);
    assert.deepEqual(validateOptions({}, POINTER), []);
    assert.deepEqual(validateOptions({ cache: {} }, POINTER), []);
  });

  for (const [options, message] of MISTAKES) {
    test(`refuses ${JSON.stringify(options)}`, () => {
      assert.equal(problemOf(options), message);
    });
  }

  test('checks every section before any value, and keys in sorted order, as the binary does', () => {
    assert.match(problemOf({ processes: { maxRestarts: 'x' }, zzz: {} }), /options\.zzz: unknown section/);
    assert.match(problemOf({ cache: { maxSize: 'bad', maxAge: 'bad' } }), /options\.cache\.maxAge:/);
  });
});

describe('optionsPointer', () => {
  const options = { cache: { maxSize: '2GB' } };

  test('names the entry of this plugin whose options these are', () => {
    const nxJson = {
      plugins: [
        '@nx/js',
        { plugin: '@nxops/nx-plugin', options: { cache: { maxSize: '1GB' } } },
        { plugin: '@nxops/nx-plugin', options },
      ],
    };
    assert.equal(optionsPointer(nxJson, structuredClone(options)), 'plugins[2].options');
    assert.equal(problemOf({ cahce: {} }, optionsPointer(nxJson, options)).split(':')[0], 'nx.json plugins[2].options.cahce');
  });

  test('finds an entry registered by path through its options, else the first entry with our name', () => {
    assert.equal(optionsPointer({ plugins: ['a', { plugin: './tools/nxops', options }] }, options), 'plugins[1].options');
    assert.equal(optionsPointer({ plugins: ['a', '@nxops/nx-plugin'] }, undefined), 'plugins[1].options');
    assert.equal(optionsPointer({}, options), 'plugins[?].options');
  });
});

describe('units', () => {
  test('sizes follow Nx units, 1024-based, a plain number is bytes', () => {
    const ok = (text) => parseSize(text).value;
    assert.equal(ok('5GB'), 5 * 2 ** 30);
    assert.equal(ok('512 MiB'), 512 * 2 ** 20);
    assert.equal(ok('1048576'), 2 ** 20);
    assert.equal(ok('1.5gb'), 3 * 2 ** 29);
    assert.equal(ok(' 10 kb '), 10 * 2 ** 10);
    assert.equal(ok('2TiB'), 2 * 2 ** 40);
    assert.equal(ok('100B'), 100);
    assert.deepEqual(parseSize('99999999999TB'), { ok: false, why: 'size is too large' });
  });

  test('durations need a unit and may be compound', () => {
    const ok = (text) => parseDuration(text).value;
    assert.equal(ok('7d'), 7 * 86_400_000);
    assert.equal(ok('500ms'), 500);
    assert.equal(ok('1h30m'), 5_400_000);
    assert.equal(ok('1h 30m'), 5_400_000);
    assert.equal(ok('2w'), 14 * 86_400_000);
    assert.equal(ok(' 30 s '), 30_000);
  });

  test('counts are whole numbers', () => {
    assert.equal(parseCount('3').value, 3);
    assert.equal(parseCount(' 05 ').value, 5);
    assert.equal(parseCount('18446744073709551616').ok, false);
  });
});

describe('suggestions', () => {
  test('Jaro-Winkler matches strsim 0.11', () => {
    // strsim's own documented and tested values.
    assert.ok(Math.abs(jaroWinkler('cheeseburger', 'cheese fries') - 0.866) < 0.001);
    assert.ok(Math.abs(jaroWinkler('dixon', 'dicksonx') - 0.813) < 0.001);
    assert.ok(Math.abs(jaroWinkler('martha', 'marhta') - 0.961) < 0.001);
    assert.ok(Math.abs(jaroWinkler('dwayne', 'duane') - 0.84) < 0.001);
    assert.equal(jaroWinkler('', ''), 1);
    assert.equal(jaroWinkler('', 'a'), 0);
  });

  test('suggests only above 0.8, case-insensitively', () => {
    assert.equal(suggest('CACHE', ['cache', 'health']), 'cache');
    assert.equal(suggest('zzz', ['cache', 'health', 'processes']), undefined);
  });
});

// The binary reads the same nx.json: its problem text must be ours, word for word.
describe('parity with the nxops binary', () => {
  const binary = realBinary();
  const cases = MISTAKES.filter(([options]) => options !== null && !Array.isArray(options));

  test('every mistake is worded as `nxops env info` words it', { skip: binary ? false : 'no nxops binary built' }, (t) => {
    const ws = tempDir(t);
    for (const [options, message] of cases) {
      const nxJson = { plugins: ['@nx/js', { plugin: '@nxops/nx-plugin', options }] };
      writeFile(join(ws, 'nx.json'), JSON.stringify(nxJson));
      const run = spawnSync(binary, ['env', 'info', '--json', '--workspace', ws], {
        env: cleanEnv({ HOME: ws }),
        encoding: 'utf-8',
      });
      assert.notEqual(run.status, 0, `nxops accepted ${JSON.stringify(options)}`);
      assert.equal(binaryProblem(run.stderr, join(ws, 'nx.json')), message.replace('plugins[0]', 'plugins[1]'));
    }
  });
});

/** `nxops: error: /ws/nx.json (plugins[0].options.x): problem` or `/ws/nx.json: plugins[0].options.x: problem`, as ours. */
function binaryProblem(stderr, nxJsonPath) {
  const line = stderr.split('\n').find((l) => l.startsWith('nxops: error: ')) ?? stderr;
  const rest = line.slice('nxops: error: '.length);
  assert.ok(rest.startsWith(nxJsonPath), line);
  const after = rest.slice(nxJsonPath.length);
  const match = /^ \(([^)]*)\): (.*)$/.exec(after) ?? /^: (plugins\[\d+\][^:]*): (.*)$/.exec(after);
  assert.ok(match, line);
  return `nx.json ${match[1]}: ${match[2]}`;
}
