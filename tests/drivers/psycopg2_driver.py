"""psycopg2 through sluice (run with Debian's /usr/bin/python3).

psycopg2 interpolates parameters on the client and sends simple-protocol
queries, so nothing is prepared: this is the baseline that transaction
pooling has always supported.  Variant: psycopg2.  Scenarios: matrix, and
txnstate (docs/session-state.md: LISTEN/NOTIFY, SET and set_config of a custom
setting and TimeZone, SQL PREPARE/EXECUTE under one name, an advisory lock held
across transactions, all while other clients churn the pool).
"""

import select
import sys
import threading
import time

import psycopg2

import drvcommon as c


def connect(**kw):
    conn = psycopg2.connect(**c.conn_params(), **kw)
    conn.autocommit = True
    return conn


def one(cur, sql, args=None):
    cur.execute(sql, args)
    return cur.fetchone()


def matrix(variant, report):
    items, log = c.table(variant, "items"), c.table(variant, "log")
    with connect() as s, s.cursor() as cur:
        cur.execute(f"drop table if exists {items}, {log}")
        cur.execute(f"create table {items} (id int primary key, name text not null)")
        cur.execute(f"insert into {items} select g, 'item-' || g from generate_series(1, 100) g")
        cur.execute(f"create table {log} (client int not null, it int not null)")
    s.close()

    def client(i):
        conn = None
        try:
            conn = connect(application_name=f"drv-{i}")
            cur = conn.cursor()
            pids = []
            for it in range(c.ITERATIONS):
                in_tx = it % 2 == 1
                if in_tx:
                    cur.execute("begin")
                c.expect(one(cur, "select %s::int + %s::int", (it, i))[0], it + i, "sum")
                item = (i * 7 + it) % 100 + 1
                c.expect(one(cur, f"select id, name from {items} where id = %s", (item,)),
                         (item, f"item-{item}"), "item row")
                pids.append(one(cur, "select pg_backend_pid()")[0])
                if in_tx:
                    cur.execute(f"insert into {log} (client, it) values (%s, %s)", (i, it))
                    c.expect(one(cur, f"select count(*) from {log} where client = %s and it = %s",
                                 (i, it))[0], 1, "row inserted in the transaction")
                    cur.execute("rollback")
                c.expect(one(cur, f"select count(*) from {log} where client = %s and it = %s",
                             (i, it))[0], 0, "row after rollback")
            report.saw_backends(pids)
        except Exception as exc:  # noqa: BLE001
            report.fail(i, exc)
        finally:
            if conn is not None:
                conn.close()

    c.run_threads(c.CLIENTS, client)


TXN_ROUNDS = 40
NOTIFICATIONS = 50
ZONES = ["Asia/Tokyo", "Europe/Paris", "America/Lima", "Africa/Cairo",
         "Australia/Perth", "Asia/Kolkata", "Europe/Oslo", "Pacific/Auckland"]


def settings_client(i, report):
    """SET and set_config of a custom setting and TimeZone stay with their client."""
    conn = connect(application_name=f"set-{i}")
    cur = conn.cursor()
    if i % 2 == 0:
        cur.execute("SET myapp.who = %s", (f"c{i}",))
        cur.execute("SET TimeZone = %s", (ZONES[i],))
    else:
        cur.execute("select set_config('myapp.who', %s, false), "
                    "set_config('TimeZone', %s, false)", (f"c{i}", ZONES[i]))
    for _ in range(TXN_ROUNDS):
        cur.execute("begin")
        c.expect(one(cur, "select current_setting('myapp.who', true), "
                          "current_setting('TimeZone')"), (f"c{i}", ZONES[i]), "own settings")
        cur.execute("commit")
    conn.close()


def clean_client(report):
    """A client that sets nothing never sees anyone's custom setting."""
    conn = connect(application_name="clean")
    cur = conn.cursor()
    zone = one(cur, "select current_setting('TimeZone')")[0]
    for _ in range(TXN_ROUNDS * 2):
        got = one(cur, "select coalesce(current_setting('myapp.who', true), ''), "
                       "current_setting('TimeZone')")
        c.expect(got, ("", zone), "no other client's settings")
    conn.close()


def prepare_client(i, report):
    """SQL PREPARE/EXECUTE, the same name in 8 clients.

    Through sluice (DRIVER_STRICT) no server has a statement named q: it is
    sluice's, and the client is not pinned.
    """
    conn = connect(application_name=f"prep-{i}")
    cur = conn.cursor()
    cur.execute(f"PREPARE q(int) AS SELECT $1 * {i + 1}")
    if c.STRICT:
        c.expect(one(cur, "select count(*) from pg_prepared_statements where name = 'q'")[0],
                 0, "q is sluice's, not pinned")
    for it in range(TXN_ROUNDS):
        c.expect(one(cur, "EXECUTE q(%s)", (it,))[0], it * (i + 1), "own statement")
    cur.execute("DEALLOCATE q")
    conn.close()


def lock_client(report):
    """A session advisory lock held across transactions keeps its backend."""
    conn, other = connect(application_name="lock"), connect(application_name="lock-2")
    cur, ocur = conn.cursor(), other.cursor()
    cur.execute("select pg_advisory_lock(917)")
    pid = one(cur, "select pg_backend_pid()")[0]
    for _ in range(TXN_ROUNDS):
        c.expect(one(cur, "select pg_backend_pid()")[0], pid, "pinned backend")
        c.expect(one(ocur, "select pg_try_advisory_lock(917)")[0], False, "lock still held")
    cur.execute("select pg_advisory_unlock(917)")
    c.expect(one(ocur, "select pg_try_advisory_lock(917)")[0], True, "lock released")
    ocur.execute("select pg_advisory_unlock_all()")
    conn.close()
    other.close()


def listen_notify(report, ready):
    """LISTEN in one connection, NOTIFY from another: every notification arrives."""
    listener = connect(application_name="listener")
    listener.cursor().execute("LISTEN drv_chan")
    if c.STRICT:
        cur = listener.cursor()
        cur.execute("select count(*) from pg_listening_channels()")
        c.expect(cur.fetchone()[0], 0, "channels the listener's backend LISTENs on (pinned?)")
    ready.set()
    sender = connect(application_name="sender")
    scur = sender.cursor()
    got = []
    for n in range(NOTIFICATIONS):
        if n % 2 == 0:
            scur.execute("NOTIFY drv_chan, %s", (str(n),))
        else:
            scur.execute("select pg_notify('drv_chan', %s)", (str(n),))
    deadline = time.monotonic() + 30
    while len(got) < NOTIFICATIONS and time.monotonic() < deadline:
        select.select([listener], [], [], 1)
        listener.poll()
        while listener.notifies:
            got.append(listener.notifies.pop(0).payload)
    c.expect(got, [str(n) for n in range(NOTIFICATIONS)], "notifications in order")
    sender.close()
    listener.close()


def txnstate(variant, report):
    stop = threading.Event()

    def churn(i):
        conn = connect(application_name=f"churn-{i}")
        cur = conn.cursor()
        while not stop.is_set():
            one(cur, "select 1")
        conn.close()

    churners = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(4)]
    for t in churners:
        t.start()
    ready = threading.Event()
    jobs = [lambda: listen_notify(report, ready), lambda: clean_client(report),
            lambda: lock_client(report)]
    jobs += [lambda i=i: settings_client(i, report) for i in range(8)]
    jobs += [lambda i=i: prepare_client(i, report) for i in range(8)]

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
    variant, scenario = c.usage(sys.argv, ["psycopg2"], ["matrix", "txnstate"])
    report = c.Report(variant, scenario)
    report.note("psycopg2", psycopg2.__version__.split()[0])
    try:
        if scenario == "txnstate":
            txnstate(variant, report)
        else:
            matrix(variant, report)
    except Exception as exc:  # noqa: BLE001
        report.fail("main", exc)
    sys.exit(report.finish())


if __name__ == "__main__":
    main()
