// node-postgres (pg) through sluice: named queries ({name, text, values}) are
// Parsed once per client connection under the given name and then only Bound,
// so a pooler must make the name exist on whichever server runs them.
//
//   node tests/drivers/node_pg.js node-pg-named matrix|alter|session|txnstate
//
// Environment and summary line as in tests/drivers/drvcommon.py.
'use strict';

const path = require('path');
const pg = require(path.join(__dirname, 'node_modules', 'pg'));
const c = require('./drvcommon');

const [variant, scenario] = c.usage(['node-pg-named'], ['matrix', 'alter', 'session', 'txnstate']);
const report = new c.Report(variant, scenario);
report.notes.pg = require(path.join(__dirname, 'node_modules', 'pg', 'package.json')).version;

async function connect(extra) {
  const client = new pg.Client({ ...c.connParams(), ...(extra || {}) });
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function one(client, name, text, values) {
  const res = await client.query({ name, text, values: values || [] });
  if (!res.rows.length) throw new c.Check(`no row from ${text}`);
  return res.rows[0];
}

async function matrix() {
  const items = c.table(variant, 'items');
  const log = c.table(variant, 'log');
  const s = await connect();
  await s.query(`drop table if exists ${items}, ${log}`);
  await s.query(`create table ${items} (id int primary key, name text not null)`);
  await s.query(`insert into ${items} select g, 'item-' || g from generate_series(1, 100) g`);
  await s.query(`create table ${log} (client int not null, it int not null)`);
  await s.end();

  async function client(i) {
    let conn;
    try {
      conn = await connect({ application_name: `drv-${i}` });
      const pids = [];
      for (let it = 0; it < c.ITERATIONS; it++) {
        const inTx = it % 2 === 1;
        if (inTx) await conn.query('BEGIN');
        c.expect((await one(conn, 'drv_sum', 'select $1::int + $2::int as v', [it, i])).v,
                 it + i, 'sum');
        const item = ((i * 7 + it) % 100) + 1;
        const row = await one(conn, 'drv_item', `select id, name from ${items} where id = $1`,
                              [item]);
        c.expect([row.id, row.name], [item, `item-${item}`], 'item row');
        pids.push((await one(conn, 'drv_pid', 'select pg_backend_pid() as pid')).pid);
        const count = `select count(*)::int as n from ${log} where client = $1 and it = $2`;
        if (inTx) {
          await conn.query({ name: 'drv_ins', text: `insert into ${log} (client, it) values ($1, $2)`,
                             values: [i, it] });
          c.expect((await one(conn, 'drv_count', count, [i, it])).n, 1,
                   'row inserted in the transaction');
          await conn.query('ROLLBACK');
        }
        c.expect((await one(conn, 'drv_count', count, [i, it])).n, 0, 'row after rollback');
      }
      report.sawBackends(pids);
    } catch (err) {
      report.fail(i, err);
    } finally {
      if (conn) await conn.end().catch(() => {});
    }
  }

  await Promise.all([...Array(c.CLIENTS).keys()].map(client));
}

async function alter() {
  const table = c.table(variant, 'alter');
  const text = `select v from ${table} where id = $1`;
  const s = await connect();
  await s.query(`drop table if exists ${table}`);
  await s.query(`create table ${table} (id int primary key, v int not null)`);
  await s.query(`insert into ${table} values (1, 42), (2, 43)`);
  const before = new c.Barrier(c.CLIENTS + 1);
  const after = new c.Barrier(c.CLIENTS + 1);

  async function client(i) {
    const key = (i % 2) + 1;
    let conn;
    try {
      try {
        conn = await connect();
        const pids = [];
        for (let it = 0; it < 10; it++) {
          if (it % 2) await conn.query('BEGIN');
          c.expect((await one(conn, 'drv_alter', text, [key])).v, 41 + key, 'v before');
          pids.push((await one(conn, 'drv_pid', 'select pg_backend_pid() as pid')).pid);
          if (it % 2) await conn.query('COMMIT');
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
          if (it % 2) await conn.query('BEGIN');
          const v = (await one(conn, 'drv_alter', text, [key])).v;
          if (it % 2) await conn.query('COMMIT');
          c.expect(v, String(41 + key), 'v after ALTER (now text)');
          pattern += '.';
        } catch (err) {
          if (err instanceof c.Check) throw err;
          if (it % 2) await conn.query('ROLLBACK');
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
      if (conn) await conn.end().catch(() => {});
    }
  }

  const clients = [...Array(c.CLIENTS).keys()].map(client);
  try {
    await before.wait();
    await s.query(`alter table ${table} alter column v type text`);
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
  const s = await connect();
  for (let k = 0; k < 4; k++) {
    await s.query(`drop schema if exists ${prefix}_s${k} cascade`);
    await s.query(`create schema ${prefix}_s${k}`);
    await s.query(`create table ${prefix}_s${k}.marker (which text)`);
    await s.query(`insert into ${prefix}_s${k}.marker values ('${prefix}_s${k}')`);
  }
  const defaultZone = (await s.query('show TimeZone')).rows[0].TimeZone;
  await s.end();

  async function client(i) {
    let conn;
    try {
      let app = `${variant}-${i}`;
      const extra = { application_name: app };
      let efd = '1';
      if (i % 3 === 0) {
        extra.options = '-c extra_float_digits=3';
        efd = '3';
      }
      conn = await connect(extra);
      const schema = `${prefix}_s${i % 4}`;
      const zone = i % 5 ? zones[i % 4] : defaultZone;
      if (i % 2) await conn.query('BEGIN');
      await conn.query(`set search_path = ${schema}, public`);
      if (i % 5) await conn.query(`set TimeZone = '${zone}'`);
      if (i % 2) await conn.query('COMMIT');
      const pids = [];
      let firstWrong = null;
      for (let it = 0; it < c.ITERATIONS; it++) {
        if (it === Math.floor(c.ITERATIONS / 2) && i % 2 === 0) {
          app = `renamed-${variant}-${i}`;
          await conn.query(`set application_name = '${app}'`);
        }
        const inTx = it % 2 === 0;
        const e = new c.Expectations();
        const setting = async (name) =>
          (await one(conn, 'drv_setting', 'select current_setting($1) as v', [name])).v;
        try {
          if (inTx) await conn.query('BEGIN');
          e.check(await setting('search_path'), `${schema}, public`, 'search_path');
          e.check(await setting('TimeZone'), zone, 'TimeZone');
          e.check(await setting('application_name'), app, 'application_name');
          e.check(await setting('extra_float_digits'), efd, 'extra_float_digits');
          pids.push((await one(conn, 'drv_pid', 'select pg_backend_pid() as pid')).pid);
          // Last: with the wrong search_path it fails the transaction.
          try {
            e.check((await one(conn, 'drv_marker', 'select which from marker')).which, schema,
                    'marker table through search_path');
          } catch (err) {
            e.wrong.push(['marker table through search_path', c.describe(err), schema]);
            throw err;
          }
          if (inTx) await conn.query('COMMIT');
        } catch (err) {
          if (inTx) await conn.query('ROLLBACK');
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
      if (conn) await conn.end().catch(() => {});
    }
  }

  await Promise.all([...Array(c.CLIENTS).keys()].map(client));
}

// Every parameterized statement of txnstate, and SQL EXECUTE, is a named
// query, one name per text.
const txnNames = new Map();

async function txnstate() {
  const named = (text) => {
    if (!txnNames.has(text)) txnNames.set(text, `drv_ts_${txnNames.size}`);
    return txnNames.get(text);
  };
  const row = async (client, text, values) => {
    const res = await client.query({ name: named(text), text, values, rowMode: 'array' });
    if (!res.rows.length) throw new c.Check(`no row from ${text}`);
    return res.rows[0];
  };
  await c.txnstate(report, {
    open: (app) => connect({ application_name: app }),
    close: (client) => client.end().catch(() => {}),
    row,
    exec: (client, text) => client.query(text),
    // A named query too: a named Parse of "EXECUTE q(n)", the same names in every client.
    execute: (client, text) => row(client, text, []),
    tx: async (client, fn) => {
      await client.query('BEGIN');
      try {
        await fn(client);
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      await client.query('COMMIT');
    },
    listen: async (client, channel, onPayload) => {
      client.on('notification', (msg) => {
        if (msg.channel === channel) onPayload(msg.payload);
      });
      await client.query(`LISTEN ${channel}`);
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
