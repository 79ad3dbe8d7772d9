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

// The txnstate scenario (docs/session-state.md), the same shape as
// psycopg2_driver.py's, for any driver behind `d`:
//   d.open(app) -> a client; d.close(client)
//   d.row(client, sql, params) -> the first row as an array (params: $1...)
//   d.exec(client, sql) -> runs a statement without parameters
//   d.execute(client, sql) -> the first row of an SQL EXECUTE, as an array
//   d.tx(client, fn) -> runs fn(client-in-transaction) in BEGIN/COMMIT
//   d.listen(client, channel, onPayload) -> subscribes
const TXN_ROUNDS = 40;
const NOTIFICATIONS = 50;
const TXN_ZONES = ['Asia/Tokyo', 'Europe/Paris', 'America/Lima', 'Africa/Cairo',
                   'Australia/Perth', 'Asia/Kolkata', 'Europe/Oslo', 'Pacific/Auckland'];

async function withClients(d, apps, fn) {
  const clients = [];
  try {
    for (const app of apps) clients.push(await d.open(app));
    await fn(...clients);
  } finally {
    for (const cl of clients) await d.close(cl);
  }
}

// SET and set_config of a custom setting and TimeZone stay with their client.
function txnSettings(d, i) {
  return withClients(d, [`set-${i}`], async (cl) => {
    if (i % 2 === 0) {
      await d.exec(cl, `SET myapp.who = 'c${i}'`);
      await d.exec(cl, `SET TimeZone = '${TXN_ZONES[i]}'`);
    } else {
      await d.row(cl, "select set_config('myapp.who', $1, false), " +
                      "set_config('TimeZone', $2, false)", [`c${i}`, TXN_ZONES[i]]);
    }
    for (let r = 0; r < TXN_ROUNDS; r++) {
      await d.tx(cl, async (t) => {
        expect(await d.row(t, "select current_setting('myapp.who', true), " +
                              "current_setting('TimeZone')", []),
               [`c${i}`, TXN_ZONES[i]], 'own settings');
      });
    }
  });
}

// A client that sets nothing never sees anyone's custom setting.
function txnClean(d) {
  return withClients(d, ['clean'], async (cl) => {
    const [zone] = await d.row(cl, "select current_setting('TimeZone')", []);
    for (let r = 0; r < TXN_ROUNDS * 2; r++) {
      expect(await d.row(cl, "select coalesce(current_setting('myapp.who', true), ''), " +
                             "current_setting('TimeZone')", []),
             ['', zone], "no other client's settings");
    }
  });
}

// SQL PREPARE/EXECUTE, the same name in 8 clients.  Through sluice (STRICT) no
// server has a statement named q: it is sluice's, and the client is not pinned.
function txnPrepare(d, i) {
  return withClients(d, [`prep-${i}`], async (cl) => {
    await d.exec(cl, `PREPARE q(int) AS SELECT $1 * ${i + 1}`);
    if (STRICT) {
      const [n] = await d.row(cl, "select count(*)::int from pg_prepared_statements " +
                                  "where name = 'q'", []);
      expect(Number(n), 0, "q is sluice's, not pinned");
    }
    for (let it = 0; it < TXN_ROUNDS; it++) {
      expect((await d.execute(cl, `EXECUTE q(${it})`))[0], it * (i + 1), 'own statement');
      expect((await d.execute(cl, 'EXECUTE q(1)'))[0], i + 1, 'own statement, again');
    }
    await d.exec(cl, 'DEALLOCATE q');
  });
}

// A session advisory lock held across transactions keeps its backend.
function txnLock(d) {
  return withClients(d, ['lock', 'lock-2'], async (cl, other) => {
    await d.row(cl, 'select pg_advisory_lock(917)', []);
    const [pid] = await d.row(cl, 'select pg_backend_pid()', []);
    for (let r = 0; r < TXN_ROUNDS; r++) {
      expect((await d.row(cl, 'select pg_backend_pid()', []))[0], pid, 'pinned backend');
      expect((await d.row(other, 'select pg_try_advisory_lock(917)', []))[0], false,
             'lock still held');
    }
    await d.row(cl, 'select pg_advisory_unlock(917)', []);
    expect((await d.row(other, 'select pg_try_advisory_lock(917)', []))[0], true,
           'lock released');
    await d.row(other, 'select pg_advisory_unlock_all()', []);
  });
}

// LISTEN in one connection, NOTIFY from another: every notification arrives.
function txnListen(d) {
  return withClients(d, ['listener', 'sender'], async (listener, sender) => {
    const got = [];
    let arrived;
    const all = new Promise((resolve) => { arrived = resolve; });
    await d.listen(listener, 'drv_chan', (payload) => {
      got.push(payload);
      if (got.length >= NOTIFICATIONS) arrived();
    });
    // Through sluice the listener's backend LISTENs on nothing: it is not pinned.
    if (STRICT) {
      expect(Number((await d.row(listener, 'select count(*) from pg_listening_channels()', []))[0]),
             0, "channels the listener's backend LISTENs on (pinned?)");
    }
    for (let n = 0; n < NOTIFICATIONS; n++) {
      if (n % 2 === 0) await d.exec(sender, `NOTIFY drv_chan, '${n}'`);
      else await d.row(sender, "select pg_notify('drv_chan', $1)", [String(n)]);
    }
    let timer;
    await Promise.race([all, new Promise((resolve) => { timer = setTimeout(resolve, 30000); })]);
    clearTimeout(timer);
    expect(got, [...Array(NOTIFICATIONS).keys()].map(String), 'notifications in order');
  });
}

async function txnstate(report, d) {
  let stop = false;
  const churn = async (i) => withClients(d, [`churn-${i}`], async (cl) => {
    while (!stop) await d.row(cl, 'select 1', []);
  });
  const churners = [0, 1, 2, 3].map((i) => churn(i).catch((err) => report.fail(`churn-${i}`, err)));
  const jobs = [() => txnListen(d), () => txnClean(d), () => txnLock(d)];
  for (let i = 0; i < 8; i++) jobs.push(() => txnSettings(d, i));
  for (let i = 0; i < 8; i++) jobs.push(() => txnPrepare(d, i));
  await Promise.all(jobs.map((job, k) => job().catch((err) => report.fail(k, err))));
  stop = true;
  await Promise.all(churners);
  report.clients = jobs.length + churners.length;
}

module.exports = {
  CLIENTS, ITERATIONS, STRICT, connParams, Check, expect, Expectations, describe, Report, Barrier, usage, table,
  txnstate,
};
