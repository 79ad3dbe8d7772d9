// Shared pieces of the Node driver programs (node-postgres, postgres.js): the
// same environment and summary line as tests/drivers/drvcommon.py.
'use strict';

const env = process.env;
const int = (name, fallback) => (env[name] ? parseInt(env[name], 10) : fallback);

const CLIENTS = int('DRIVER_CLIENTS', 40);
const ITERATIONS = int('DRIVER_ITERATIONS', 50);
const MAX_BACKENDS = int('DRIVER_MAX_BACKENDS', 0);
const EXPECT_MOVES = env.DRIVER_EXPECT_MOVES === '1';
const STRICT = env.DRIVER_STRICT !== '0';

function connParams() {
  return {
    host: env.PGHOST || '127.0.0.1',
    port: parseInt(env.PGPORT || '5432', 10),
    user: env.PGUSER || 'app',
    password: env.PGPASSWORD || '',
    database: env.PGDATABASE || 'app',
  };
}

class Check extends Error {}

function expect(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Check(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

// Compares several values at once, so one failure names every wrong one.
class Expectations {
  constructor() {
    this.wrong = [];
  }

  check(got, want, what) {
    if (JSON.stringify(got) !== JSON.stringify(want)) this.wrong.push([what, got, want]);
  }

  done(report) {
    if (!this.wrong.length) return;
    for (const [what] of this.wrong) {
      const key = what.replace(/ /g, '_');
      report.wrongs[key] = (report.wrongs[key] || 0) + 1;
    }
    for (const [what, got, want] of this.wrong) {
      const key = what.replace(/ /g, '_');
      if (!(key in report.examples)) {
        report.examples[key] = `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`;
      }
    }
    throw new Check(this.wrong.map(([what, got, want]) =>
      `${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`).join('; '));
  }
}

function describe(err) {
  const code = err && err.code && /^[0-9A-Z]{5}$/.test(err.code) ? ` [${err.code}]` : '';
  const msg = String((err && err.message) || err).split('\n')[0];
  return `${(err && err.constructor && err.constructor.name) || 'Error'}${code}: ${msg}`;
}

class Report {
  constructor(variant, scenario) {
    this.variant = variant;
    this.scenario = scenario;
    this.errors = [];
    this.backends = new Set();
    this.moved = 0;
    this.notes = {};
    this.patterns = {};
    this.wrongs = {};
    this.examples = {}; // the first wrong value seen of each kind
    this.clients = CLIENTS;
  }

  fail(client, err) {
    const detail = describe(err);
    this.errors.push(`client ${client}: ${detail}`);
    if (this.errors.length <= 5) {
      console.error(`client ${client} failed: ${detail}`);
      if (!(err instanceof Check) && err && err.stack) console.error(err.stack);
    }
  }

  sawBackends(pids) {
    const mine = new Set(pids);
    for (const p of mine) this.backends.add(p);
    if (mine.size > 1) this.moved++;
  }

  pattern(p) {
    this.patterns[p] = (this.patterns[p] || 0) + 1;
  }

  finish() {
    if (this.backends.size) {
      if (MAX_BACKENDS && this.backends.size > MAX_BACKENDS) {
        this.errors.push(`clients saw ${this.backends.size} distinct backends, ` +
                         `more than the pool's ${MAX_BACKENDS}`);
      }
      if (EXPECT_MOVES && this.moved === 0) {
        this.errors.push("no client's statements moved between backends");
      }
    }
    for (const k of Object.keys(this.examples).sort()) console.error(`first wrong ${k}: ${this.examples[k]}`);
    const facts = [`clients=${this.clients}`];
    if (this.backends.size) facts.push(`backends=${this.backends.size} moved=${this.moved}`);
    for (const k of Object.keys(this.notes).sort()) facts.push(`${k}=${this.notes[k]}`);
    const wrongs = Object.keys(this.wrongs).sort();
    if (wrongs.length) facts.push('wrong=' + wrongs.map((w) => `${w}:${this.wrongs[w]}`).join(','));
    const pats = Object.keys(this.patterns).sort();
    if (pats.length) facts.push('patterns=' + pats.map((p) => `${p}:${this.patterns[p]}`).join(','));
    const head = `RESULT ${this.variant} ${this.scenario}: `;
    if (this.errors.length) {
      console.log(`${head}FAIL (${this.errors.length} errors; first: ` +
                  `${this.errors[0].replace(/\n/g, ' ')}) ${facts.join(' ')}`);
      return 1;
    }
    console.log(`${head}ok (${facts.join(' ')})`);
    return 0;
  }
}

// A reusable rendezvous of n parties; abort() releases everyone with an error.
class Barrier {
  constructor(n) {
    this.n = n;
    this.waiting = [];
    this.broken = null;
  }

  wait() {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (this.waiting.length === this.n) {
        for (const w of this.waiting) w.resolve();
        this.waiting = [];
      }
    });
  }

  abort(why) {
    this.broken = new Error(`barrier broken: ${why}`);
    for (const w of this.waiting) w.reject(this.broken);
    this.waiting = [];
  }
}

function usage(variants, scenarios) {
  const [variant, scenario] = process.argv.slice(2);
  if (!variants.includes(variant) || !scenarios.includes(scenario)) {
    console.error(`usage: ${process.argv[1]} ${variants.join('|')} ${scenarios.join('|')}`);
    process.exit(2);
  }
  return [variant, scenario];
}

const table = (variant, base) => `drv_${base}_${variant.replace(/-/g, '_')}`;

module.exports = {
  CLIENTS, ITERATIONS, STRICT, connParams, Check, expect, Expectations, describe, Report, Barrier, usage, table,
};
