"""psycopg2 through sluice (run with Debian's /usr/bin/python3).

psycopg2 interpolates parameters on the client and sends simple-protocol
queries, so nothing is prepared: this is the baseline that transaction
pooling has always supported.  Variant: psycopg2.  Scenario: matrix.
"""

import sys

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


def main():
    variant, scenario = c.usage(sys.argv, ["psycopg2"], ["matrix"])
    report = c.Report(variant, scenario)
    report.note("psycopg2", psycopg2.__version__.split()[0])
    try:
        matrix(variant, report)
    except Exception as exc:  # noqa: BLE001
        report.fail("main", exc)
    sys.exit(report.finish())


if __name__ == "__main__":
    main()
