// postgres.js through sluice with its defaults: every tagged-template query is
// a named prepared statement (prepare: true).  Each client is its own
// postgres() instance with one connection (max: 1).
//
//   node tests/drivers/postgresjs.js postgresjs matrix|alter|session|txnstate
//
// Note: outside a transaction postgres.js retries a prepared query once,
// with a fresh Parse, after "prepared statement does not exist" or "cached
// plan must not change result type"; inside sql.begin() it cannot, so the
// transactions here are what shows a pooler that loses statements.
// Environment and summary line as in tests/drivers/drvcommon.py.
'use strict';

const path = require('path');
const postgres = require(path.join(__dirname, 'node_modules', 'postgres'));
const c = require('./drvcommon');

const [variant, scenario] = c.usage(['postgresjs'], ['matrix', 'alter', 'session', 'txnstate']);
const report = new c.Report(variant, scenario);
report.notes.postgres = require(path.join(__dirname, 'node_modules', 'postgres', 'package.json')).version;

class Rollback extends Error {}

function connect(extra) {
  const p = c.connParams();
  return postgres({
    host: p.host,
    port: p.port,
    user: p.user,
    pass: p.password,
    database: p.database,
    max: 1,
    onnotice: () => {},
    ...(extra || {}),
  });
}

async function matrix() {
  const items = c.table(variant, 'items');
  const log = c.table(variant, 'log');
  const s = connect();
  await s`drop table if exists ${s(items)}, ${s(log)}`;
  await s`create table ${s(items)} (id int primary key, name text not null)`;
  await s`insert into ${s(items)} select g, 'item-' || g from generate_series(1, 100) g`;
  await s`create table ${s(log)} (client int not null, it int not null)`;
  await s.end();

  async function body(sql, i, it, inTx) {
    c.expect((await sql`select ${it}::int + ${i}::int as v`)[0].v, it + i, 'sum');
    const item = ((i * 7 + it) % 100) + 1;
    const row = (await sql`select id, name from ${sql(items)} where id = ${item}`)[0];
    c.expect([row.id, row.name], [item, `item-${item}`], 'item row');
    const pid = (await sql`select pg_backend_pid() as pid`)[0].pid;
    if (inTx) {
      await sql`insert into ${sql(log)} (client, it) values (${i}, ${it})`;
      c.expect((await sql`select count(*)::int as n from ${sql(log)}
                          where client = ${i} and it = ${it}`)[0].n,
               1, 'row inserted in the transaction');
    }
    return pid;
  }

  async function client(i) {
    const sql = connect({ connection: { application_name: `drv-${i}` } });
    try {
      const pids = [];
      for (let it = 0; it < c.ITERATIONS; it++) {
        if (it % 2) {
          try {
            await sql.begin(async (tx) => {
              pids.push(await body(tx, i, it, true));
              throw new Rollback();
            });
          } catch (err) {
            if (!(err instanceof Rollback)) throw err;
          }
        } else {
          pids.push(await body(sql, i, it, false));
        }
        c.expect((await sql`select count(*)::int as n from ${sql(log)}
                            where client = ${i} and it = ${it}`)[0].n, 0, 'row after rollback');
      }
      report.sawBackends(pids);
    } catch (err) {
      report.fail(i, err);
    } finally {
      await sql.end({ timeout: 5 }).catch(() => {});
    }
  }

  await Promise.all([...Array(c.CLIENTS).keys()].map(client));
}

async function alter() {
  const table = c.table(variant, 'alter');
  const s = connect();
  await s`drop table if exists ${s(table)}`;
  await s`create table ${s(table)} (id int primary key, v int not null)`;
  await s`insert into ${s(table)} values (1, 42), (2, 43)`;
  const before = new c.Barrier(c.CLIENTS + 1);
  const after = new c.Barrier(c.CLIENTS + 1);
  const select = async (sql, key) => (await sql`select v from ${sql(table)} where id = ${key}`)[0].v;

  async function client(i) {
    const key = (i % 2) + 1;
    const sql = connect();
    try {
      try {
        const pids = [];
        for (let it = 0; it < 10; it++) {
          const run = async (q) => {
            c.expect(await select(q, key), 41 + key, 'v before');
            pids.push((await q`select pg_backend_pid() as pid`)[0].pid);
          };
          if (it % 2) await sql.begin(run);
          else await run(sql);
        }
        report.sawBackends(pids);
      } catch (err) {
        before.abort(`client ${i} failed`);
        throw err;
      }
      await before.wait();
      await after.wait();
      let pattern = '';
      const errors = [];
      let attempts = 10;
      for (let it = 0; it < attempts; it++) {
        try {
          const v = it % 2 ? await sql.begin((tx) => select(tx, key)) : await select(sql, key);
          c.expect(v, String(41 + key), 'v after ALTER (now text)');
          pattern += '.';
        } catch (err) {
          if (err instanceof c.Check) throw err;
          errors.push(err.code || '?');
          pattern += 'E';
          if (it === attempts - 1 && attempts === 10) attempts++; // see the execution after an error
          if (errors.length === 1 && i < 3) console.error(`client ${i}: after ALTER: ${c.describe(err)}`);
        }
      }
      report.pattern(pattern);
      const bad = errors.filter((e) => e !== '0A000');
      if (bad.length) throw new c.Check(`after ALTER TABLE: errors other than 0A000: ${bad}`);
      if (c.STRICT && errors.length > 1) {
        throw new c.Check(`after ALTER TABLE: ${errors.length} errors in ${attempts} executions, ` +
                          `at most one allowed (executions: ${pattern})`);
      }
    } catch (err) {
      report.fail(i, err);
    } finally {
      await sql.end({ timeout: 5 }).catch(() => {});
    }
  }

  const clients = [...Array(c.CLIENTS).keys()].map(client);
  try {
    await before.wait();
    await s`alter table ${s(table)} alter column v type text`;
    await after.wait();
  } catch (err) {
    after.abort('main');
  }
  await Promise.all(clients);
  await s.end();
}

async function session() {
  const prefix = c.table(variant, 'sess');
  const zones = ['Asia/Tokyo', 'America/New_York', 'Europe/Berlin', 'Australia/Sydney'];
  const s = connect();
  for (let k = 0; k < 4; k++) {
    const schema = `${prefix}_s${k}`;
    await s`drop schema if exists ${s(schema)} cascade`;
    await s`create schema ${s(schema)}`;
    await s`create table ${s(schema)}.marker (which text)`;
    await s`insert into ${s(schema)}.marker values (${schema})`;
  }
  const defaultZone = (await s`show TimeZone`)[0].TimeZone;
  await s.end();

  async function client(i) {
    let app = `${variant}-${i}`;
    const connection = { application_name: app };
    let efd = '1';
    if (i % 3 === 0) {
      connection.extra_float_digits = '3';
      efd = '3';
    }
    const sql = connect({ connection });
    try {
      const schema = `${prefix}_s${i % 4}`;
      const zone = i % 5 ? zones[i % 4] : defaultZone;
      const setup = async (q) => {
        await q.unsafe(`set search_path = ${schema}, public`);
        if (i % 5) await q.unsafe(`set TimeZone = '${zone}'`);
      };
      if (i % 2) await sql.begin(setup);
      else await setup(sql);
      const pids = [];
      let firstWrong = null;
      for (let it = 0; it < c.ITERATIONS; it++) {
        if (it === Math.floor(c.ITERATIONS / 2) && i % 2 === 0) {
          app = `renamed-${variant}-${i}`;
          await sql.unsafe(`set application_name = '${app}'`);
        }
        const e = new c.Expectations();
        const check = async (q) => {
          const setting = async (name) => (await q`select current_setting(${name}) as v`)[0].v;
          e.check(await setting('search_path'), `${schema}, public`, 'search_path');
          e.check(await setting('TimeZone'), zone, 'TimeZone');
          e.check(await setting('application_name'), app, 'application_name');
          e.check(await setting('extra_float_digits'), efd, 'extra_float_digits');
          pids.push((await q`select pg_backend_pid() as pid`)[0].pid);
          // Last: with the wrong search_path it fails the transaction.
          try {
            e.check((await q`select which from marker`)[0].which, schema,
                    'marker table through search_path');
          } catch (err) {
            e.wrong.push(['marker table through search_path', c.describe(err), schema]);
            throw err;
          }
        };
        try {
          if (it % 2 === 0) await sql.begin(check);
          else await check(sql);
        } catch (err) {
          if (!e.wrong.length) throw err;
        }
        try {
          e.done(report);
        } catch (wrong) {
          firstWrong = firstWrong || wrong; // every iteration still runs
        }
      }
      report.sawBackends(pids);
      if (firstWrong) throw firstWrong;
    } catch (err) {
      report.fail(i, err);
    } finally {
      await sql.end({ timeout: 5 }).catch(() => {});
    }
  }

  await Promise.all([...Array(c.CLIENTS).keys()].map(client));
}

// The listener LISTENs on its own connection (max: 1) with the query
// sql.listen() sends, a named Parse (prepare: true), and hears notifications
// through onnotify: sql.listen() would use a hidden connection of its own,
// and the check that the client's backend LISTENs on nothing could not see it.
async function txnstate() {
  const onNotify = new Map(); // client -> its (channel, payload) handler
  await c.txnstate(report, {
    open: async (app) => {
      const sql = connect({
        connection: { application_name: app },
        onnotify: (channel, payload) => (onNotify.get(sql) || (() => {}))(channel, payload),
      });
      return sql;
    },
    close: (sql) => sql.end({ timeout: 5 }).catch(() => {}),
    row: async (sql, text, values) => {
      const rows = await sql.unsafe(text, values, { prepare: true }).values();
      if (!rows.length) throw new c.Check(`no row from ${text}`);
      return rows[0];
    },
    exec: (sql, text) => sql.unsafe(text),
    execute: async (sql, text) => (await sql.unsafe(text, [], { prepare: true }).values())[0],
    tx: (sql, fn) => sql.begin((tx) => fn(tx)),
    listen: async (sql, channel, onPayload) => {
      onNotify.set(sql, (ch, payload) => { if (ch === channel) onPayload(payload); });
      await sql.unsafe(`listen "${channel}"`, [], { prepare: true });
    },
  });
}

(async () => {
  try {
    await { matrix, alter, session, txnstate }[scenario]();
  } catch (err) {
    report.fail('main', err);
  }
  process.exit(report.finish());
})();
