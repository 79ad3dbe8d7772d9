"""psycopg 3 through sluice (run with Debian's /usr/bin/python3).

Variants: psycopg3-prepare0 (prepare_threshold=0: every statement is a named
prepared statement from its first execution) and psycopg3-default (the
default prepare_threshold=5: prepared from the sixth execution on).
Scenarios: matrix, alter, session, memory, memory-dealloc, txnstate; see drvcommon.py
for the environment and tests/drivers/README in docs/drivers.md for what each
checks.
"""

import os
import select
import sys
import threading
import time
from contextlib import nullcontext

import psycopg

import drvcommon as c

VARIANTS = {"psycopg3-prepare0": 0, "psycopg3-default": 5}
SCENARIOS = ["matrix", "alter", "session", "memory", "memory-dealloc", "txnstate"]


def connect(threshold, **kw):
    conn = psycopg.connect(**c.conn_params(), autocommit=True, **kw)
    conn.prepare_threshold = threshold
    return conn


def setup_tables(variant):
    items, log = c.table(variant, "items"), c.table(variant, "log")
    with connect(None) as s:
        s.execute(f"drop table if exists {items}, {log}")
        s.execute(f"create table {items} (id int primary key, name text not null)")
        s.execute(f"insert into {items} select g, 'item-' || g from generate_series(1, 100) g")
        s.execute(f"create table {log} (client int not null, it int not null)")
    return items, log


def matrix(variant, threshold, report):
    items, log = setup_tables(variant)

    def client(i):
        try:
            with connect(threshold, application_name=f"drv-{i}") as conn:
                pids = []
                for it in range(c.ITERATIONS):
                    in_tx = it % 2 == 1
                    try:
                        with conn.transaction() if in_tx else nullcontext():
                            got = conn.execute("select %s::int + %s::int", (it, i)).fetchone()[0]
                            c.expect(got, it + i, "sum")
                            item = (i * 7 + it) % 100 + 1
                            row = conn.execute(f"select id, name from {items} where id = %s",
                                               (item,)).fetchone()
                            c.expect(row, (item, f"item-{item}"), "item row")
                            pids.append(conn.execute("select pg_backend_pid()").fetchone()[0])
                            if in_tx:
                                conn.execute(f"insert into {log} (client, it) values (%s, %s)",
                                             (i, it))
                                n = conn.execute(f"select count(*) from {log} "
                                                 f"where client = %s and it = %s",
                                                 (i, it)).fetchone()[0]
                                c.expect(n, 1, "row inserted in the transaction")
                                raise psycopg.Rollback()
                    except psycopg.Rollback:
                        pass
                    n = conn.execute(f"select count(*) from {log} where client = %s and it = %s",
                                     (i, it)).fetchone()[0]
                    c.expect(n, 0, "row after rollback")
                report.saw_backends(pids)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            report.fail(i, exc)

    c.run_threads(c.CLIENTS, client)


def alter(variant, threshold, report):
    table = c.table(variant, "alter")
    query = f"select v from {table} where id = %s"
    with connect(None) as s:
        s.execute(f"drop table if exists {table}")
        s.execute(f"create table {table} (id int primary key, v int not null)")
        s.execute(f"insert into {table} values (1, 42), (2, 43)")
    before = threading.Barrier(c.CLIENTS + 1, timeout=120)
    after = threading.Barrier(c.CLIENTS + 1, timeout=120)
    def client(i):
        key = i % 2 + 1
        conn = None
        try:
            conn = connect(threshold)
            pids = []
            for it in range(10):
                with conn.transaction() if it % 2 else nullcontext():
                    c.expect(conn.execute(query, (key,)).fetchone()[0], 41 + key, "v before")
                    pids.append(conn.execute("select pg_backend_pid()").fetchone()[0])
            report.saw_backends(pids)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
            before.abort()
            return
        finally:
            try:
                before.wait()
            except threading.BrokenBarrierError:
                pass
        try:
            after.wait()
            tally = c.AlterTally()
            attempts, it = 10, 0
            while it < attempts:
                try:
                    with conn.transaction() if it % 2 else nullcontext():
                        v = conn.execute(query, (key,)).fetchone()[0]
                    c.expect(v, str(41 + key), "v after ALTER (now text)")
                    tally.ok()
                except psycopg.Error as exc:
                    tally.error(exc.sqlstate)
                    if it == attempts - 1 and attempts == 10:
                        attempts += 1  # the execution after an error must be seen
                    if len(tally.errors) == 1 and i < 3:
                        print(f"client {i}: after ALTER: {c.describe(exc)}", file=sys.stderr)
                it += 1
            tally.record(report)
            tally.check(attempts)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(c.CLIENTS)]
    for t in threads:
        t.start()
    try:
        before.wait()
        with connect(None) as s:
            s.execute(f"alter table {table} alter column v type text")
        after.wait()
    except threading.BrokenBarrierError:
        after.abort()
    for t in threads:
        t.join()


def sync_with_peers(variant, report):
    """Waits until every program of a concurrent run has its clients connected."""
    directory = os.environ.get("DRIVER_SYNC_DIR")
    count = c.env_int("DRIVER_SYNC_COUNT", 0)
    if not directory or not count:
        return
    open(os.path.join(directory, variant + ".ready"), "w").close()
    deadline = time.monotonic() + 120
    while len([f for f in os.listdir(directory) if f.endswith(".ready")]) < count:
        if time.monotonic() > deadline:
            raise c.Check("peer programs did not get ready within 120 s")
        time.sleep(0.05)


def session(variant, threshold, report):
    prefix = c.table(variant, "sess")
    zones = ["Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"]
    with connect(None) as s:
        for k in range(4):
            s.execute(f"drop schema if exists {prefix}_s{k} cascade")
            s.execute(f"create schema {prefix}_s{k}")
            s.execute(f"create table {prefix}_s{k}.marker (which text)")
            s.execute(f"insert into {prefix}_s{k}.marker values ('{prefix}_s{k}')")
        default_zone = s.execute("show TimeZone").fetchone()[0]
    connected = threading.Barrier(c.CLIENTS + 1, timeout=120)
    start = threading.Barrier(c.CLIENTS + 1, timeout=180)

    def client(i):
        conn = None
        try:
            app = f"{variant}-{i}"
            kw = {"application_name": app}
            efd = "1"
            if i % 3 == 0:
                kw["options"] = "-c extra_float_digits=3"
                efd = "3"
            conn = connect(threshold, **kw)
            schema = f"{prefix}_s{i % 4}"
            zone = zones[i % 4] if i % 5 else default_zone
            with conn.transaction() if i % 2 else nullcontext():
                conn.execute(f"set search_path = {schema}, public")
                if i % 5:
                    conn.execute(f"set TimeZone = '{zone}'")
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
            connected.abort()
            return
        finally:
            try:
                connected.wait()
            except threading.BrokenBarrierError:
                pass
        try:
            start.wait()
            pids = []
            first_wrong = None
            for it in range(c.ITERATIONS):
                if it == c.ITERATIONS // 2 and i % 2 == 0:
                    app = f"renamed-{variant}-{i}"
                    conn.execute(f"set application_name = '{app}'")
                e = c.Expectations()
                try:
                    with conn.transaction() if it % 2 == 0 else nullcontext():
                        one = lambda sql, *a: conn.execute(sql, a or None).fetchone()[0]
                        e.check(one("show search_path"), f"{schema}, public", "search_path")
                        e.check(one("show TimeZone"), zone, "TimeZone")
                        e.check(one("select current_setting(%s)", "application_name"), app,
                                "application_name")
                        e.check(one("show extra_float_digits"), efd, "extra_float_digits")
                        pids.append(one("select pg_backend_pid()"))
                        # Last: with the wrong search_path it fails the transaction.
                        try:
                            e.check(one("select which from marker"), schema,
                                    "marker table through search_path")
                        except psycopg.Error as exc:
                            e.wrong.append(("marker table through search_path",
                                            c.describe(exc), schema))
                            raise
                except psycopg.Error:
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
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(c.CLIENTS)]
    for t in threads:
        t.start()
    try:
        connected.wait()
        sync_with_peers(variant, report)
        start.wait()
    except threading.BrokenBarrierError:
        start.abort()
    except Exception as exc:  # noqa: BLE001
        report.fail("main", exc)
        start.abort()
    for t in threads:
        t.join()


def memory(variant, report, client_dealloc):
    """10,000 distinct prepared statements on one connection.

    With client_dealloc False psycopg keeps every statement prepared (its own
    LRU, prepared_max, is made larger than the run), so only sluice's
    max_prepared_statements bounds the server; with True psycopg's default
    prepared_max=100 makes it DEALLOCATE the statements it evicts.
    """
    count_sql = "select count(*) from pg_prepared_statements"
    worst = 0
    report.clients = 1
    with connect(0) as conn:
        if not client_dealloc:
            conn.prepared_max = c.STATEMENTS * 2

        def server_count():
            # Not prepared itself, so it adds nothing to what it counts.
            return conn.execute(count_sql, prepare=False).fetchone()[0]

        for n in range(c.STATEMENTS):
            got = conn.execute(f"select %s::int + {n}", (n,)).fetchone()[0]
            c.expect(got, 2 * n, f"statement {n}")
            if n % 500 == 499:
                worst = max(worst, server_count())
                if c.MAX_PREPARED and worst > c.MAX_PREPARED:
                    raise c.Check(f"{worst} statements prepared on the server after {n + 1}, "
                                  f"bound {c.MAX_PREPARED}")
        # The first statements were evicted on the server long ago; psycopg may
        # still hold them as prepared and execute them by name.
        for n in range(200):
            got = conn.execute(f"select %s::int + {n}", (n + 1,)).fetchone()[0]
            c.expect(got, 2 * n + 1, f"statement {n} again")
        worst = max(worst, server_count())
        if c.MAX_PREPARED and worst > c.MAX_PREPARED:
            raise c.Check(f"{worst} statements prepared on the server, bound {c.MAX_PREPARED}")
    report.note("statements", c.STATEMENTS)
    report.note("max_server_prepared", worst)


TXN_ROUNDS = 40
NOTIFICATIONS = 50
ZONES = ["Asia/Tokyo", "Europe/Paris", "America/Lima", "Africa/Cairo",
         "Australia/Perth", "Asia/Kolkata", "Europe/Oslo", "Pacific/Auckland"]


def one(conn, sql, args=None):
    return conn.execute(sql, args).fetchone()


def txn_settings_client(threshold, i):
    """SET and set_config of a custom setting and TimeZone stay with their client.

    SET takes no bind parameters, so its values are literals (known constants).
    """
    with connect(threshold, application_name=f"set-{i}") as conn:
        if i % 2 == 0:
            conn.execute(f"SET myapp.who = 'c{i}'")
            conn.execute(f"SET TimeZone = '{ZONES[i]}'")
        else:
            conn.execute("select set_config('myapp.who', %s, false), "
                         "set_config('TimeZone', %s, false)", (f"c{i}", ZONES[i]))
        for _ in range(TXN_ROUNDS):
            with conn.transaction():
                c.expect(one(conn, "select current_setting('myapp.who', true), "
                                   "current_setting('TimeZone')"), (f"c{i}", ZONES[i]),
                         "own settings")


def txn_clean_client(threshold):
    """A client that sets nothing never sees anyone's custom setting."""
    with connect(threshold, application_name="clean") as conn:
        zone = one(conn, "select current_setting('TimeZone')")[0]
        for _ in range(TXN_ROUNDS * 2):
            got = one(conn, "select coalesce(current_setting('myapp.who', true), ''), "
                            "current_setting('TimeZone')")
            c.expect(got, ("", zone), "no other client's settings")


def txn_prepare_client(threshold, i):
    """SQL PREPARE/EXECUTE, the same name in 8 clients.

    EXECUTE q(1) with prepare=True is a named Parse of "EXECUTE q(1)", the
    same text in every client, then executed by name each round.  psycopg 3
    sends PREPARE and DEALLOCATE through the extended protocol too (a named
    Parse with prepare_threshold=0, else an unnamed one), which sluice
    tracks: through it (DRIVER_STRICT) no server has a statement named q,
    as a pinned client's server would (docs/session-state.md).
    """
    with connect(threshold, application_name=f"prep-{i}") as conn:
        conn.execute(f"PREPARE q(int) AS SELECT $1 * {i + 1}")
        if c.STRICT:
            c.expect(one(conn, "select count(*) from pg_prepared_statements where name = 'q'")[0],
                     0, "q is sluice's, not pinned")
        for it in range(TXN_ROUNDS):
            c.expect(one(conn, f"EXECUTE q({it})")[0], it * (i + 1), "own statement")
            got = conn.execute("EXECUTE q(1)", prepare=True).fetchone()[0]
            c.expect(got, i + 1, "own statement, prepared")
        conn.execute("DEALLOCATE q")


def txn_lock_client(threshold):
    """A session advisory lock held across transactions keeps its backend."""
    with connect(threshold, application_name="lock") as conn, \
            connect(threshold, application_name="lock-2") as other:
        conn.execute("select pg_advisory_lock(917)")
        pid = one(conn, "select pg_backend_pid()")[0]
        for _ in range(TXN_ROUNDS):
            c.expect(one(conn, "select pg_backend_pid()")[0], pid, "pinned backend")
            c.expect(one(other, "select pg_try_advisory_lock(917)")[0], False,
                     "lock still held")
        conn.execute("select pg_advisory_unlock(917)")
        c.expect(one(other, "select pg_try_advisory_lock(917)")[0], True, "lock released")
        other.execute("select pg_advisory_unlock_all()")


def txn_listen_notify(threshold):
    """LISTEN in one connection, NOTIFY from another: every notification arrives.

    The LISTEN is in a transaction block (prepare0: a named Parse, the extended
    protocol).  Through sluice (DRIVER_STRICT) the listener's backend LISTENs on
    nothing: sluice's shared listening connection does, and the client is not
    pinned.  psycopg 3.1's notifies() generator has no timeout, so the listener
    waits on its socket and lets a round trip deliver what arrived.
    """
    got = []
    with connect(threshold, application_name="listener") as listener, \
            connect(threshold, application_name="sender") as sender:
        listener.add_notify_handler(lambda n: got.append(n.payload))
        with listener.transaction():
            listener.execute("LISTEN drv_chan")
        if c.STRICT:
            c.expect(one(listener, "select count(*) from pg_listening_channels()")[0], 0,
                     "channels the listener's backend LISTENs on (pinned?)")
        for n in range(NOTIFICATIONS):
            if n % 2 == 0:
                sender.execute(f"NOTIFY drv_chan, '{n}'")
            else:
                sender.execute("select pg_notify('drv_chan', %s)", (str(n),))
        deadline = time.monotonic() + 30
        while len(got) < NOTIFICATIONS and time.monotonic() < deadline:
            select.select([listener.fileno()], [], [], 1)
            listener.execute("select 1")
        c.expect(got, [str(n) for n in range(NOTIFICATIONS)], "notifications in order")


def txnstate(variant, threshold, report):
    stop = threading.Event()

    def churn(i):
        with connect(threshold, application_name=f"churn-{i}") as conn:
            while not stop.is_set():
                one(conn, "select 1")

    churners = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(4)]
    for t in churners:
        t.start()
    jobs = [lambda: txn_listen_notify(threshold), lambda: txn_clean_client(threshold),
            lambda: txn_lock_client(threshold)]
    jobs += [lambda i=i: txn_settings_client(threshold, i) for i in range(8)]
    jobs += [lambda i=i: txn_prepare_client(threshold, i) for i in range(8)]

    def run(k):
        try:
            jobs[k]()
        except Exception as exc:  # noqa: BLE001
            report.fail(k, exc)

    c.run_threads(len(jobs), run)
    stop.set()
    for t in churners:
        t.join()
    report.clients = len(jobs) + len(churners)


def main():
    variant, scenario = c.usage(sys.argv, VARIANTS, SCENARIOS)
    report = c.Report(variant, scenario)
    threshold = VARIANTS[variant]
    report.note("psycopg", psycopg.__version__)
    try:
        if scenario == "matrix":
            matrix(variant, threshold, report)
        elif scenario == "alter":
            alter(variant, threshold, report)
        elif scenario == "session":
            session(variant, threshold, report)
        elif scenario == "memory":
            memory(variant, report, client_dealloc=False)
        elif scenario == "memory-dealloc":
            memory(variant, report, client_dealloc=True)
        elif scenario == "txnstate":
            txnstate(variant, threshold, report)
    except Exception as exc:  # noqa: BLE001
        report.fail("main", exc)
    sys.exit(report.finish())


if __name__ == "__main__":
    main()
