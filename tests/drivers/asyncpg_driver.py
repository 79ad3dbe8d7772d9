"""asyncpg through sluice (run with Debian's /usr/bin/python3).

asyncpg always uses the extended protocol with named statements
(__asyncpg_stmt_N__).  Variants: asyncpg-cache (conn.fetch* with its default
statement cache of 100) and asyncpg-prepare (explicit conn.prepare(), the
statement objects reused).  Scenarios: matrix, alter, session, memory,
txnstate; see
drvcommon.py for the environment.
"""

import asyncio
import sys

import asyncpg

import drvcommon as c

VARIANTS = ["asyncpg-cache", "asyncpg-prepare"]
SCENARIOS = ["matrix", "alter", "session", "memory", "txnstate"]


async def connect(**kw):
    p = c.conn_params()
    return await asyncpg.connect(host=p["host"], port=p["port"], user=p["user"],
                                 password=p["password"], database=p["dbname"], **kw)


class Statements:
    """Runs a query through the statement cache or through explicit prepare()."""

    def __init__(self, conn, explicit):
        self.conn = conn
        self.explicit = explicit
        self.prepared = {}

    async def stmt(self, sql):
        if sql not in self.prepared:
            self.prepared[sql] = await self.conn.prepare(sql)
        return self.prepared[sql]

    def forget(self, sql):
        self.prepared.pop(sql, None)

    async def fetchrow(self, sql, *args):
        if self.explicit:
            return await (await self.stmt(sql)).fetchrow(*args)
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql, *args):
        if self.explicit:
            return await (await self.stmt(sql)).fetchval(*args)
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql, *args):
        if self.explicit:
            await (await self.stmt(sql)).fetch(*args)
        else:
            await self.conn.execute(sql, *args)


class Rollback(Exception):
    pass


async def matrix(variant, explicit, report):
    items, log = c.table(variant, "items"), c.table(variant, "log")
    s = await connect()
    await s.execute(f"drop table if exists {items}, {log}")
    await s.execute(f"create table {items} (id int primary key, name text not null)")
    await s.execute(f"insert into {items} select g, 'item-' || g from generate_series(1, 100) g")
    await s.execute(f"create table {log} (client int not null, it int not null)")
    await s.close()

    async def body(st, i, it, in_tx):
        c.expect(await st.fetchval("select $1::int + $2::int", it, i), it + i, "sum")
        item = (i * 7 + it) % 100 + 1
        row = await st.fetchrow(f"select id, name from {items} where id = $1", item)
        c.expect(tuple(row), (item, f"item-{item}"), "item row")
        pid = await st.fetchval("select pg_backend_pid()")
        if in_tx:
            await st.execute(f"insert into {log} (client, it) values ($1, $2)", i, it)
            c.expect(await st.fetchval(f"select count(*) from {log} where client = $1 and it = $2",
                                       i, it), 1, "row inserted in the transaction")
        return pid

    async def client(i):
        conn = None
        try:
            conn = await connect(server_settings={"application_name": f"drv-{i}"})
            st = Statements(conn, explicit)
            pids = []
            for it in range(c.ITERATIONS):
                if it % 2:
                    try:
                        async with conn.transaction():
                            pids.append(await body(st, i, it, True))
                            raise Rollback()
                    except Rollback:
                        pass
                else:
                    pids.append(await body(st, i, it, False))
                c.expect(await st.fetchval(f"select count(*) from {log} where client = $1 "
                                           f"and it = $2", i, it), 0, "row after rollback")
            report.saw_backends(pids)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
        finally:
            if conn is not None:
                await conn.close()

    await asyncio.gather(*(client(i) for i in range(c.CLIENTS)))


async def alter(variant, explicit, report):
    table = c.table(variant, "alter")
    query = f"select v from {table} where id = $1"
    s = await connect()
    await s.execute(f"drop table if exists {table}")
    await s.execute(f"create table {table} (id int primary key, v int not null)")
    await s.execute(f"insert into {table} values (1, 42), (2, 43)")
    before = asyncio.Barrier(c.CLIENTS + 1)
    after = asyncio.Barrier(c.CLIENTS + 1)

    async def maybe_tx(conn, it):
        if it % 2:
            return conn.transaction()
        return _Null()

    async def client(i):
        key = i % 2 + 1
        conn = None
        try:
            conn = await connect()
            st = Statements(conn, explicit)
            pids = []
            for it in range(10):
                async with await maybe_tx(conn, it):
                    c.expect(await st.fetchval(query, key), 41 + key, "v before")
                    pids.append(await st.fetchval("select pg_backend_pid()"))
            report.saw_backends(pids)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
            await before.abort()
            return
        finally:
            try:
                await before.wait()
            except asyncio.BrokenBarrierError:
                pass
        try:
            await after.wait()
            tally = c.AlterTally()
            attempts, it = 10, 0
            while it < attempts:
                try:
                    async with await maybe_tx(conn, it):
                        v = await st.fetchval(query, key)
                    c.expect(v, str(41 + key), "v after ALTER (now text)")
                    tally.ok()
                except asyncpg.PostgresError as exc:
                    tally.error(exc.sqlstate)
                    # An explicitly prepared statement stays bound to the old
                    # result type: the application prepares it again.
                    st.forget(query)
                    if it == attempts - 1 and attempts == 10:
                        attempts += 1
                    if len(tally.errors) == 1 and i < 3:
                        print(f"client {i}: after ALTER: {c.describe(exc)}", file=sys.stderr)
                it += 1
            tally.record(report)
            tally.check(attempts)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
        finally:
            await conn.close()

    tasks = [asyncio.create_task(client(i)) for i in range(c.CLIENTS)]
    try:
        await asyncio.wait_for(before.wait(), 120)
        await s.execute(f"alter table {table} alter column v type text")
        await asyncio.wait_for(after.wait(), 120)
    except (asyncio.BrokenBarrierError, asyncio.TimeoutError):
        await after.abort()
    await asyncio.gather(*tasks)
    await s.close()


class _Null:
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def session(variant, explicit, report):
    prefix = c.table(variant, "sess")
    zones = ["Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"]
    s = await connect()
    for k in range(4):
        await s.execute(f"drop schema if exists {prefix}_s{k} cascade")
        await s.execute(f"create schema {prefix}_s{k}")
        await s.execute(f"create table {prefix}_s{k}.marker (which text)")
        await s.execute(f"insert into {prefix}_s{k}.marker values ('{prefix}_s{k}')")
    default_zone = await s.fetchval("show TimeZone")
    await s.close()

    async def client(i):
        conn = None
        try:
            app = f"{variant}-{i}"
            settings = {"application_name": app}
            efd = "1"
            if i % 3 == 0:
                settings["extra_float_digits"] = "3"
                efd = "3"
            conn = await connect(server_settings=settings)
            st = Statements(conn, explicit)
            schema = f"{prefix}_s{i % 4}"
            zone = zones[i % 4] if i % 5 else default_zone
            async with conn.transaction() if i % 2 else _Null():
                await conn.execute(f"set search_path = {schema}, public")
                if i % 5:
                    await conn.execute(f"set TimeZone = '{zone}'")
            pids = []
            first_wrong = None
            for it in range(c.ITERATIONS):
                if it == c.ITERATIONS // 2 and i % 2 == 0:
                    app = f"renamed-{variant}-{i}"
                    await conn.execute(f"set application_name = '{app}'")
                e = c.Expectations()
                try:
                    async with conn.transaction() if it % 2 == 0 else _Null():
                        e.check(await st.fetchval("select current_setting('search_path')"),
                                f"{schema}, public", "search_path")
                        e.check(await st.fetchval("select current_setting($1)", "TimeZone"),
                                zone, "TimeZone")
                        e.check(await st.fetchval("select current_setting($1)",
                                                  "application_name"), app, "application_name")
                        e.check(await st.fetchval("select current_setting('extra_float_digits')"),
                                efd, "extra_float_digits")
                        pids.append(await st.fetchval("select pg_backend_pid()"))
                        # Last: with the wrong search_path it fails the transaction.
                        try:
                            e.check(await st.fetchval("select which from marker"), schema,
                                    "marker table through search_path")
                        except asyncpg.PostgresError as exc:
                            e.wrong.append(("marker table through search_path",
                                            c.describe(exc), schema))
                            raise
                except asyncpg.PostgresError:
                    if not e.wrong:
                        raise
                try:
                    e.done(report)
                except c.Check as wrong:  # every iteration still runs
                    first_wrong = first_wrong or wrong
            report.saw_backends(pids)
            if first_wrong:
                raise first_wrong
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
        finally:
            if conn is not None:
                await conn.close()

    await asyncio.gather(*(client(i) for i in range(c.CLIENTS)))


async def memory(variant, explicit, report):
    """10,000 distinct statements on one connection, each kept prepared by
    asyncpg (explicit prepare() objects stay referenced; the cache variant
    gets a cache as large as the run), so only sluice bounds the server."""
    report.clients = 1
    kw = {} if explicit else {"statement_cache_size": c.STATEMENTS * 2}
    conn = await connect(**kw)
    keep = []
    worst = 0

    async def run(n, arg):
        sql = f"select $1::int + {n}"
        if explicit:
            if n >= len(keep):
                keep.append(await conn.prepare(sql))
            return await keep[n].fetchval(arg)
        return await conn.fetchval(sql, arg)

    async def server_count():
        return await conn.fetchval("select count(*) from pg_prepared_statements")

    try:
        for n in range(c.STATEMENTS):
            c.expect(await run(n, n), 2 * n, f"statement {n}")
            if n % 500 == 499:
                worst = max(worst, await server_count())
                if c.MAX_PREPARED and worst > c.MAX_PREPARED:
                    raise c.Check(f"{worst} statements prepared on the server after {n + 1}, "
                                  f"bound {c.MAX_PREPARED}")
        for n in range(200):
            c.expect(await run(n, n + 1), 2 * n + 1, f"statement {n} again")
        worst = max(worst, await server_count())
        if c.MAX_PREPARED and worst > c.MAX_PREPARED:
            raise c.Check(f"{worst} statements prepared on the server, bound {c.MAX_PREPARED}")
    finally:
        await conn.close()
    report.note("statements", c.STATEMENTS)
    report.note("max_server_prepared", worst)


TXN_ROUNDS = 40
NOTIFICATIONS = 50
ZONES = ["Asia/Tokyo", "Europe/Paris", "America/Lima", "Africa/Cairo",
         "Australia/Perth", "Asia/Kolkata", "Europe/Oslo", "Pacific/Auckland"]


async def txn_settings_client(st_for, i):
    """SET and set_config of a custom setting and TimeZone stay with their client."""
    conn = await connect(server_settings={"application_name": f"set-{i}"})
    try:
        st = st_for(conn)
        if i % 2 == 0:
            await conn.execute(f"SET myapp.who = 'c{i}'")
            await conn.execute(f"SET TimeZone = '{ZONES[i]}'")
        else:
            await st.fetchrow("select set_config('myapp.who', $1, false), "
                              "set_config('TimeZone', $2, false)", f"c{i}", ZONES[i])
        for _ in range(TXN_ROUNDS):
            async with conn.transaction():
                got = await st.fetchrow("select current_setting('myapp.who', true), "
                                        "current_setting('TimeZone')")
                c.expect(tuple(got), (f"c{i}", ZONES[i]), "own settings")
    finally:
        await conn.close()


async def txn_clean_client(st_for):
    """A client that sets nothing never sees anyone's custom setting."""
    conn = await connect(server_settings={"application_name": "clean"})
    try:
        st = st_for(conn)
        zone = await st.fetchval("select current_setting('TimeZone')")
        for _ in range(TXN_ROUNDS * 2):
            got = await st.fetchrow("select coalesce(current_setting('myapp.who', true), ''), "
                                    "current_setting('TimeZone')")
            c.expect(tuple(got), ("", zone), "no other client's settings")
    finally:
        await conn.close()


async def txn_prepare_client(i):
    """SQL PREPARE/EXECUTE, the same name in 8 clients.

    asyncpg's statement cache makes each EXECUTE text a named statement (a
    named Parse of "EXECUTE q(n)"), the same texts in every client; EXECUTE
    q(1) is run again each round, from the cache, on whichever server.
    Through sluice (DRIVER_STRICT) no server has a statement named q: it is
    sluice's, and the client is not pinned.
    """
    conn = await connect(server_settings={"application_name": f"prep-{i}"})
    try:
        await conn.execute(f"PREPARE q(int) AS SELECT $1 * {i + 1}")
        if c.STRICT:
            c.expect(await conn.fetchval("select count(*) from pg_prepared_statements "
                                         "where name = 'q'"), 0, "q is sluice's, not pinned")
        for it in range(TXN_ROUNDS):
            c.expect(await conn.fetchval(f"EXECUTE q({it})"), it * (i + 1), "own statement")
            c.expect(await conn.fetchval("EXECUTE q(1)"), i + 1, "own statement, cached")
        await conn.execute("DEALLOCATE q")
    finally:
        await conn.close()


async def txn_lock_client(st_for):
    """A session advisory lock held across transactions keeps its backend."""
    conn = await connect(server_settings={"application_name": "lock"})
    other = await connect(server_settings={"application_name": "lock-2"})
    try:
        st, ost = st_for(conn), st_for(other)
        await st.fetchval("select pg_advisory_lock(917)")
        pid = await st.fetchval("select pg_backend_pid()")
        for _ in range(TXN_ROUNDS):
            c.expect(await st.fetchval("select pg_backend_pid()"), pid, "pinned backend")
            c.expect(await ost.fetchval("select pg_try_advisory_lock(917)"), False,
                     "lock still held")
        await st.fetchval("select pg_advisory_unlock(917)")
        c.expect(await ost.fetchval("select pg_try_advisory_lock(917)"), True, "lock released")
        await ost.fetchval("select pg_advisory_unlock_all()")
    finally:
        await conn.close()
        await other.close()


async def txn_listen_notify(st_for):
    """LISTEN (asyncpg's add_listener) in one connection, NOTIFY from another."""
    listener = await connect(server_settings={"application_name": "listener"})
    sender = await connect(server_settings={"application_name": "sender"})
    try:
        got = []
        arrived = asyncio.Event()

        def on_notify(_conn, _pid, _channel, payload):
            got.append(payload)
            if len(got) >= NOTIFICATIONS:
                arrived.set()

        await listener.add_listener("drv_chan", on_notify)
        if c.STRICT:
            c.expect(await listener.fetchval("select count(*) from pg_listening_channels()"), 0,
                     "channels the listener's backend LISTENs on (pinned?)")
        st = st_for(sender)
        for n in range(NOTIFICATIONS):
            if n % 2 == 0:
                await sender.execute(f"NOTIFY drv_chan, '{n}'")
            else:
                await st.fetchval("select pg_notify('drv_chan', $1)", str(n))
        try:
            await asyncio.wait_for(arrived.wait(), 30)
        except asyncio.TimeoutError:
            pass
        c.expect(got, [str(n) for n in range(NOTIFICATIONS)], "notifications in order")
    finally:
        await sender.close()
        await listener.close()


async def txnstate(variant, explicit, report):
    stop = asyncio.Event()

    def st_for(conn):
        return Statements(conn, explicit)

    async def churn(i):
        conn = await connect(server_settings={"application_name": f"churn-{i}"})
        try:
            while not stop.is_set():
                await conn.fetchval("select 1")
        finally:
            await conn.close()

    churners = [asyncio.create_task(churn(i)) for i in range(4)]
    jobs = [txn_listen_notify(st_for), txn_clean_client(st_for), txn_lock_client(st_for)]
    jobs += [txn_settings_client(st_for, i) for i in range(8)]
    jobs += [txn_prepare_client(i) for i in range(8)]

    async def run(k, job):
        try:
            await job
        except Exception as exc:  # noqa: BLE001
            report.fail(k, exc)

    await asyncio.gather(*(run(k, job) for k, job in enumerate(jobs)))
    stop.set()
    for k, t in enumerate(churners):
        try:
            await t
        except Exception as exc:  # noqa: BLE001
            report.fail(f"churn-{k}", exc)
    report.clients = len(jobs) + len(churners)


async def amain(variant, scenario, report):
    explicit = variant == "asyncpg-prepare"
    await {"matrix": matrix, "alter": alter, "session": session,
           "memory": memory, "txnstate": txnstate}[scenario](variant, explicit, report)


def main():
    variant, scenario = c.usage(sys.argv, VARIANTS, SCENARIOS)
    report = c.Report(variant, scenario)
    report.note("asyncpg", asyncpg.__version__)
    try:
        asyncio.run(amain(variant, scenario, report))
    except Exception as exc:  # noqa: BLE001
        report.fail("main", exc)
    sys.exit(report.finish())


if __name__ == "__main__":
    main()
