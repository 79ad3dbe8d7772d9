#!/usr/bin/env python3
"""Turns the raw measurements of bench/run.sh into results.

    analyze.py run  ...   one pgbench run: reads its per-transaction logs,
                          appends one JSON object to runs.jsonl, prints a line
    analyze.py idle ...   one idle-client run: appends to runs.jsonl
    analyze.py report OUT writes OUT/results.json, OUT/results.md, the
                          gnuplot data and OUT/tps_p99.png

Only the standard library, so the benchmark needs nothing beyond Debian's
python3.  run.sh does the measuring; this file only does arithmetic, so a
figure in the report can always be traced back to runs.jsonl.
"""

import argparse
import glob
import json
import math
import os
import subprocess
import sys

TARGETS = ["direct", "pgbouncer", "sluice"]

# Scenario order in the report; run.sh uses the same names.
SCENARIOS = [
    ("select_c1", "select-only, simple, 1 client"),
    ("select_c16", "select-only, simple, 16 clients"),
    ("select_c64", "select-only, simple, 64 clients"),
    ("select_c256", "select-only, simple, 256 clients"),
    ("extended_c64", "select-only, -M extended, 64 clients"),
    ("extended_c256", "select-only, -M extended, 256 clients"),
    ("prepared_c64", "select-only, -M prepared, 64 clients"),
    ("tpcb_c16", "TPC-B-like, simple, 16 clients"),
    ("storm_c16", "connection storm (-C), select-only, 16 clients"),
]

CHART_CLIENTS = [("select_c1", 1), ("select_c16", 16), ("select_c64", 64), ("select_c256", 256)]


def percentile(sorted_values, p):
    """Nearest-rank percentile: an observed value, never an interpolation."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def read_txn_logs(prefix, t1, t2):
    """Latencies (us) of transactions that completed inside [t1, t2].

    pgbench -l writes one line per transaction:
        client_id transaction_no latency_us script_no epoch_s epoch_us [lag]
    The completion time is the epoch pair; the latency column is numeric
    unless the transaction failed or was skipped.  Returns the in-window
    latencies, the count of failed lines in the window, the earliest
    completion time seen (to tell whether the window began after the logins)
    and whether every thread's log reaches past t2.

    run.sh stops pgbench with SIGINT, which cuts each log at a buffer
    boundary: a last line without its newline is a fragment and is dropped,
    or a cut epoch_us would move it into the window.  Each thread writes in
    completion order, so a log whose last whole line is past t2 holds every
    transaction of that thread that ended inside the window.
    """
    latencies = []
    failed = 0
    first = None
    complete = True
    # PREFIX.PID for thread 0, PREFIX.PID.N for the others; not PREFIX.out.
    for path in glob.glob(glob.escape(prefix) + ".[0-9]*"):
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().split("\n")
        # After split, a log ending in "\n" leaves "" last; anything else
        # is the fragment of a cut line.
        lines.pop()
        last = None
        for line in lines:
            cols = line.split()
            if len(cols) < 6:
                continue
            try:
                done = int(cols[4]) + int(cols[5]) / 1e6
            except ValueError:
                continue
            last = done
            if first is None or done < first:
                first = done
            if done < t1 or done > t2:
                continue
            try:
                latencies.append(int(cols[2]))
            except ValueError:
                failed += 1
        if last is None or last < t2:
            complete = False
    latencies.sort()
    return latencies, failed, first, complete


def first_errors(path, limit=3):
    """The first few distinct error lines of a pgbench stderr file."""
    seen = []
    if not path or not os.path.exists(path):
        return seen
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            low = line.lower()
            if not any(w in low for w in ("error", "fatal", "abort", "could not", "timeout")):
                continue
            # "client 12 aborted ..." repeats per client: keep one of each shape.
            shape = " ".join(w for w in line.split() if not w.isdigit())
            if shape in [s for s, _ in seen]:
                continue
            seen.append((shape, line))
            if len(seen) >= limit:
                break
    return [line for _, line in seen]


def cmd_run(a):
    lat, failed_txns, first, complete = read_txn_logs(a.log_prefix, a.t1, a.t2)
    window = a.t2 - a.t1
    n = len(lat)
    errors = first_errors(a.err_file)
    notes = [a.note] if a.note else []
    status = "ok"
    if a.rc in (124, 137):
        status = "timeout"
    elif a.rc != 0 or errors or failed_txns:
        # pgbench carries on with the clients left after one aborts, and is
        # then stopped by run.sh like any other run: its stderr tells.
        status = "failed"
    elif n == 0:
        status = "failed"
        notes.append("no transaction completed in the window")
    # Only SIGINT cuts logs; a pgbench that ended by itself flushed them, and
    # its last transaction may well have completed before t2 (a slow storm).
    if n and a.stopped and not complete:
        notes.append("a thread's log ends before the window does: the window misses "
                     "transactions, TPS is understated")
    a.note = "; ".join(notes)
    rec = {
        "kind": "pgbench",
        "scenario": a.scenario,
        "target": a.target,
        "clients": a.clients,
        "status": status,
        "rc": a.rc,
        "window_s": round(window, 3),
        "transactions": n,
        "failed_transactions": failed_txns,
        "tps": round(n / window, 1) if window > 0 else None,
        "p50_ms": round(percentile(lat, 50) / 1000.0, 3) if n else None,
        "p99_ms": round(percentile(lat, 99) / 1000.0, 3) if n else None,
        "pooler_cpu_us_per_txn": None,
        "pooler_rss_kb": a.rss_kb if a.rss_kb >= 0 else None,
        "server_conns": a.server_conns if a.server_conns >= 0 else None,
        "warmup_covered_logins": first is not None and first < a.t1,
        "errors": errors,
        "load1": a.load if a.load >= 0 else None,
        "login_s": round(a.tl - a.t0, 2) if a.t0 and a.tl else None,
        "run_wall_s": round(a.te - a.t0, 2) if a.t0 and a.te else None,
        "note": a.note or None,
    }
    if a.cpu0 >= 0 and a.cpu1 >= 0 and n:
        rec["pooler_cpu_us_per_txn"] = round((a.cpu1 - a.cpu0) / n, 2)
    append(a.jsonl, rec)
    print(
        "  %-13s %-9s %-7s tps=%-9s p50=%-7s p99=%-7s cpu/txn=%-7s conns=%-4s login=%ss wall=%ss%s"
        % (
            a.scenario,
            a.target,
            status,
            rec["tps"],
            rec["p50_ms"],
            rec["p99_ms"],
            rec["pooler_cpu_us_per_txn"],
            rec["server_conns"],
            rec["login_s"],
            rec["run_wall_s"],
            ("  " + rec["errors"][0]) if rec["errors"] and status != "ok" else "",
        ),
        file=sys.stderr,
    )


def cmd_idle(a):
    ok = a.ok if a.ok >= 0 else 0
    rec = {
        "kind": "idle",
        "target": a.target,
        "requested": a.requested,
        "ok": ok,
        "held": a.held if a.held >= 0 else None,
        "failed": a.failed if a.failed >= 0 else None,
        "connect_seconds": a.seconds if a.seconds >= 0 else None,
        "connect_rate": round(ok / a.seconds, 1) if a.seconds > 0 else None,
        "rss_before_kb": a.rss0,
        "rss_idle_kb": a.rss1,
        "kb_per_client": round((a.rss1 - a.rss0) / ok, 3) if ok and a.rss1 >= 0 else None,
        "anon_before_kb": a.anon0,
        "anon_idle_kb": a.anon1,
        "anon_kb_per_client": (round((a.anon1 - a.anon0) / ok, 3)
                               if ok and a.anon1 >= 0 and a.anon0 >= 0 else None),
        "login_cpu_us": round((a.cpu1 - a.cpu0) / ok, 1) if ok and a.cpu1 >= 0 else None,
        "server_conns": a.server_conns if a.server_conns >= 0 else None,
        "status": "ok" if a.held == a.requested else ("timeout" if a.rc in (124, 137) else "failed"),
        "rc": a.rc,
        "errors": first_errors(a.err_file, limit=5),
    }
    append(a.jsonl, rec)
    print(
        "  %-13s %-9s %-7s ok=%s held=%s kb/client=%s rate=%s/s server_conns=%s%s"
        % (
            "idle",
            a.target,
            rec["status"],
            rec["ok"],
            rec["held"],
            rec["kb_per_client"],
            rec["connect_rate"],
            rec["server_conns"],
            ("  " + rec["errors"][0]) if rec["errors"] else "",
        ),
        file=sys.stderr,
    )


def append(path, rec):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


# ---------------------------------------------------------------- report


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        return ("%." + str(digits) + "f") % v
    return str(v)


def fmt_ratio(v):
    return "—" if v is None else "%.2f×" % v


def per_core(rec):
    """Transactions per second of pooler CPU: TPS divided by the cores the
    pooler kept busy (its CPU seconds over the window's seconds).  Readable
    on two cores, where TPS itself is capped by the machine."""
    cpu = rec.get("pooler_cpu_us_per_txn") if rec else None
    return round(1e6 / cpu) if cpu else None


def cores_used(rec):
    cpu = rec.get("pooler_cpu_us_per_txn") if rec else None
    return round(rec["tps"] * cpu / 1e6, 2) if cpu and rec.get("tps") else None


def sweep_targets(runs):
    """sluice (workers = 1) and the sluice_wN targets, by worker count."""
    out = {1: "sluice"}
    for _, tgt in runs:
        if tgt.startswith("sluice_w") and tgt[8:].isdigit():
            out[int(tgt[8:])] = tgt
    return [out[w] for w in sorted(out)]


def load(out):
    runs, idle = {}, {}
    with open(os.path.join(out, "runs.jsonl"), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["kind"] == "idle":
                idle[rec["target"]] = rec
            else:
                runs[(rec["scenario"], rec["target"])] = rec
    with open(os.path.join(out, "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    return meta, runs, idle


def ok_value(rec, key):
    """A figure is compared only when its run finished cleanly."""
    if rec is None or rec.get("status") != "ok":
        return None
    return rec.get(key)


def build_ratios(runs):
    rows = []
    for scen, _ in SCENARIOS:
        s = runs.get((scen, "sluice"))
        p = runs.get((scen, "pgbouncer"))
        d = runs.get((scen, "direct"))
        row = {"scenario": scen}
        for key in ("tps", "p50_ms", "p99_ms"):
            row[key + "_vs_pgbouncer"] = ratio(ok_value(s, key), ok_value(p, key))
            row[key + "_vs_direct"] = ratio(ok_value(s, key), ok_value(d, key))
        row["cpu_vs_pgbouncer"] = ratio(
            ok_value(s, "pooler_cpu_us_per_txn"), ok_value(p, "pooler_cpu_us_per_txn")
        )
        row["rss_vs_pgbouncer"] = ratio(ok_value(s, "pooler_rss_kb"), ok_value(p, "pooler_rss_kb"))
        rows.append(row)
    return rows


def target(name, value, goal, met, detail):
    return {"target": name, "value": value, "goal": goal, "met": met, "detail": detail}


def build_targets(runs, idle):
    """The goals of issue 7, checked against this run's figures."""
    out = []

    def get(scen, tgt, key):
        return ok_value(runs.get((scen, tgt)), key)

    for scen, proto in (("select_c64", ""), ("extended_c64", ", extended")):
        r = ratio(get(scen, "sluice", "pooler_cpu_us_per_txn"),
                  get(scen, "pgbouncer", "pooler_cpu_us_per_txn"))
        out.append(target("CPU/txn at 64 clients%s, sluice/PgBouncer" % proto, r, "<= 0.6",
                          None if r is None else r <= 0.6,
                          "sluice %s us, PgBouncer %s us" % (
                              get(scen, "sluice", "pooler_cpu_us_per_txn"),
                              get(scen, "pgbouncer", "pooler_cpu_us_per_txn"))))
    for scen, c, proto in (("select_c64", 64, ""), ("select_c256", 256, ""),
                           ("extended_c64", 64, ", extended"),
                           ("extended_c256", 256, ", extended")):
        r = ratio(get(scen, "sluice", "tps"), get(scen, "pgbouncer", "tps"))
        out.append(target("TPS at %d clients%s, sluice/PgBouncer" % (c, proto), r, ">= 1.1",
                          None if r is None else r >= 1.1, ""))
    r = ratio(get("prepared_c64", "sluice", "tps"), get("extended_c64", "pgbouncer", "tps"))
    out.append(target("sluice -M prepared / PgBouncer -M extended TPS at 64", r, ">= 1.3",
                      None if r is None else r >= 1.3, ""))
    for key in ("p50_ms", "p99_ms"):
        d = get("select_c1", "direct", key)
        s = get("select_c1", "sluice", key)
        p = get("select_c1", "pgbouncer", key)
        if None in (d, s, p):
            out.append(target("added %s latency at 1 client" % key[:3], None, "<= PgBouncer's",
                              None, "missing figures"))
            continue
        sa, pa = round(s - d, 3), round(p - d, 3)
        out.append(target("added %s latency at 1 client (ms over direct)" % key[:3], sa,
                          "<= PgBouncer's %.3f" % pa, sa <= pa,
                          "sluice %.3f ms, PgBouncer %.3f ms, direct %.3f ms" % (s, p, d)))
    si, pi = idle.get("sluice"), idle.get("pgbouncer")
    sk = si.get("kb_per_client") if si and si["status"] == "ok" else None
    pk = pi.get("kb_per_client") if pi and pi["status"] == "ok" else None
    out.append(target("KB per idle client, sluice vs PgBouncer", sk,
                      "<= PgBouncer's %s" % fmt(pk, 2),
                      None if sk is None or pk is None else sk <= pk, ""))
    out.append(target("KB per idle client, sluice (issue 19)", sk, "<= 0.7",
                      None if sk is None else sk <= 0.7,
                      "%s clients held" % si.get("held") if si else ""))
    sc = si.get("server_conns") if si else None
    out.append(target("server connections serving the idle clients (sluice)", sc, "<= 20",
                      None if sc is None or not si or si["status"] != "ok" else sc <= 20,
                      "%s of %s clients held" % (si.get("held"), si.get("requested"))
                      if si else ""))
    r = ratio(get("storm_c16", "sluice", "tps"), get("storm_c16", "pgbouncer", "tps"))
    out.append(target("connection storm rate, sluice/PgBouncer", r, ">= 1.2",
                      None if r is None else r >= 1.2, ""))
    return out


def write_markdown(path, meta, runs, idle, ratios, targets):
    L = []
    L.append("# sluice benchmark results\n")
    L.append("- date: %s" % meta.get("date"))
    L.append("- machine: %s cores, %s, kernel %s" % (meta.get("nproc"), meta.get("cpu_model"),
                                                      meta.get("kernel")))
    L.append("- command: `%s` (%s mode: %ss warmup + %ss measured per run, scale %s)" % (
        meta.get("command"), meta.get("mode"), meta.get("warmup_s"), meta.get("duration_s"),
        meta.get("scale")))
    L.append("- versions: %s; %s; sluice %s" % (meta.get("postgres"), meta.get("pgbouncer"),
                                                meta.get("sluice")))
    L.append("- wall time: %s s" % meta.get("wall_s"))
    L.append("- load average (/proc/loadavg) before the run, i.e. other work on the "
             "machine: %s; at its end: %s" % (
        meta.get("loadavg_start"), meta.get("loadavg_end")))
    L.append("")
    L.append("Latencies in ms, CPU in µs of pooler user+system time per transaction, RSS of "
             "the pooler process at the end of the measured window, server connections = "
             "most backends of database `bench` seen in pg_stat_activity during the window "
             "(the pooler's own, or pgbench's for direct).\n")
    L.append("## Runs\n")
    L.append("| scenario | target | status | TPS | p50 ms | p99 ms | CPU µs/txn | "
             "TPS/pooler core | RSS MB | server conns |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, _ in SCENARIOS:
        for tgt in TARGETS:
            r = runs.get((scen, tgt))
            if r is None:
                L.append("| %s | %s | not run | | | | | | | |" % (scen, tgt))
                continue
            rss = r.get("pooler_rss_kb")
            # A failed run's figures describe the clients that survived: shown
            # in parentheses, and never used in a ratio.
            if r["status"] == "ok":
                f = fmt
            else:
                def f(v, digits=1):
                    return "—" if v is None else "(%s)" % fmt(v, digits)
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                scen, tgt, r["status"], f(r["tps"]), f(r["p50_ms"], 3),
                f(r["p99_ms"], 3), f(r["pooler_cpu_us_per_txn"], 1), f(per_core(r), 0),
                f(rss / 1024.0 if rss is not None else None, 1), f(r["server_conns"])))
    L.append("")
    sweep = sweep_targets(runs)
    if len(sweep) > 1:
        L.append("## Workers sweep\n")
        L.append("TPS per pooler core = transactions per second of pooler CPU (1 / CPU per "
                 "transaction); cores used = pooler CPU seconds per second of the window. "
                 "On a machine with fewer cores than clients' and Postgres' demand, TPS stops "
                 "scaling with workers but TPS per core still shows what each worker costs.\n")
        L.append("| scenario | workers | status | TPS | TPS s/pgb | CPU µs/txn | "
                 "TPS/pooler core | cores used | p99 ms |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for scen, _ in SCENARIOS:
            for tgt in sweep:
                r = runs.get((scen, tgt))
                if r is None:
                    continue
                ok = r["status"] == "ok"
                pgb = runs.get((scen, "pgbouncer"))
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    scen, 1 if tgt == "sluice" else tgt[8:], r["status"], fmt(r["tps"]),
                    fmt_ratio(ratio(r["tps"], pgb["tps"]) if ok and pgb and
                              pgb["status"] == "ok" else None),
                    fmt(r["pooler_cpu_us_per_txn"], 1), fmt(per_core(r), 0),
                    fmt(cores_used(r), 2), fmt(r["p99_ms"], 3)))
        L.append("")
    L.append("Figures in parentheses come from a failed run (the clients that were left) and "
             "are not compared.\n")
    L.append("## Ratios (sluice / PgBouncer, sluice / direct)\n")
    L.append("Higher is better for TPS, lower for latency, CPU and RSS. — = a side failed.\n")
    L.append("| scenario | TPS s/pgb | TPS s/direct | p50 s/pgb | p50 s/direct | p99 s/pgb | "
             "p99 s/direct | CPU s/pgb | RSS s/pgb |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in ratios:
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            row["scenario"], fmt_ratio(row["tps_vs_pgbouncer"]),
            fmt_ratio(row["tps_vs_direct"]), fmt_ratio(row["p50_ms_vs_pgbouncer"]),
            fmt_ratio(row["p50_ms_vs_direct"]), fmt_ratio(row["p99_ms_vs_pgbouncer"]),
            fmt_ratio(row["p99_ms_vs_direct"]), fmt_ratio(row["cpu_vs_pgbouncer"]),
            fmt_ratio(row["rss_vs_pgbouncer"])))
    L.append("")
    L.append("## Idle clients (SCRAM login + SELECT 1 each, then held)\n")
    L.append("RSS before = the pooler freshly restarted, after one login; KB/client = "
             "(RSS idle - RSS before) / clients; anon KB/client = the same with RssAnon "
             "(heap and stacks only: pages of code and libraries first touched by the logins "
             "are left out).\n")
    L.append("| target | requested | ok | held at end | failed | connect rate /s | "
             "RSS before MB | RSS idle MB | KB/client | anon KB/client | pooler CPU µs/login | "
             "server conns |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tgt in ("pgbouncer", "sluice"):
        r = idle.get(tgt)
        if r is None:
            L.append("| %s | not run | | | | | | | | | | |" % tgt)
            continue
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            tgt, r["requested"], r["ok"], fmt(r["held"]), fmt(r["failed"]),
            fmt(r["connect_rate"]),
            fmt(r["rss_before_kb"] / 1024.0 if r["rss_before_kb"] >= 0 else None, 1),
            fmt(r["rss_idle_kb"] / 1024.0 if r["rss_idle_kb"] >= 0 else None, 1),
            fmt(r["kb_per_client"], 2), fmt(r.get("anon_kb_per_client"), 2),
            fmt(r["login_cpu_us"]), fmt(r["server_conns"])))
    si, pi = idle.get("sluice"), idle.get("pgbouncer")
    if si and pi and si.get("kb_per_client") and pi.get("kb_per_client"):
        L.append("\nKB per idle client, sluice/PgBouncer: %s" % fmt_ratio(
            ratio(si["kb_per_client"], pi["kb_per_client"])))
    L.append("")
    L.append("## Targets (issues 7 and 19)\n")
    L.append("| target | measured | goal | met |")
    L.append("|---|---:|---|---|")
    for t in targets:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        L.append("| %s | %s | %s | %s%s |" % (t["target"], fmt(t["value"], 3), t["goal"], met,
                                               (" (" + t["detail"] + ")") if t["detail"] else ""))
    L.append("")
    failures = []
    for scen, _ in SCENARIOS:
        for tgt in TARGETS + sweep[1:]:
            r = runs.get((scen, tgt))
            if r and (r["status"] != "ok" or r.get("note")):
                failures.append("- %s / %s: %s (rc %s)%s%s" % (
                    scen, tgt, r["status"], r["rc"],
                    "; " + r["note"] if r.get("note") else "",
                    "".join("\n  - `%s`" % e for e in r["errors"])))
            if r and r["status"] == "ok" and not r.get("warmup_covered_logins", True):
                failures.append("- %s / %s: warmup shorter than the logins; the window "
                                "includes connection setup" % (scen, tgt))
    for tgt in ("pgbouncer", "sluice"):
        r = idle.get(tgt)
        if r and r["status"] != "ok":
            failures.append("- idle / %s: %s, %s of %s held%s" % (
                tgt, r["status"], r["held"], r["requested"],
                "".join("\n  - `%s`" % e for e in r["errors"])))
    L.append("## Failures and notes\n")
    L.extend(failures or ["none"])
    L.append("")
    L.append("Chart: `bench/out/tps_p99.png` (TPS and p99 by client count, select-only simple).")
    L.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))
    return "\n".join(L)


def write_chart(out, runs):
    data = os.path.join(out, "tps_p99.dat")
    with open(data, "w", encoding="ascii") as f:
        f.write("# clients tps_direct tps_pgbouncer tps_sluice p99_direct p99_pgbouncer "
                "p99_sluice\n")
        for scen, c in CHART_CLIENTS:
            vals = [c]
            for key in ("tps", "p99_ms"):
                for tgt in TARGETS:
                    v = ok_value(runs.get((scen, tgt)), key)
                    vals.append("NaN" if v is None else v)
            f.write(" ".join(str(v) for v in vals) + "\n")
    script = os.path.join(out, "tps_p99.gp")
    with open(script, "w", encoding="ascii") as f:
        f.write("""set terminal pngcairo size 1200,500 font ",10"
set output '%s'
set datafile missing "NaN"
set logscale x 2
set xtics (1, 16, 64, 256)
set xrange [0.8:320]
set key top left
set grid
set multiplot layout 1,2 title "pgbench -S (simple protocol), transaction pooling"
set title "Throughput"
set xlabel "clients"
set ylabel "TPS"
set yrange [0:*]
plot '%s' u 1:2 w lp lw 2 t 'direct', '' u 1:3 w lp lw 2 t 'PgBouncer', '' u 1:4 w lp lw 2 t 'sluice'
set title "p99 latency"
set ylabel "ms"
set logscale y
set yrange [*:*]
plot '%s' u 1:5 w lp lw 2 t 'direct', '' u 1:6 w lp lw 2 t 'PgBouncer', '' u 1:7 w lp lw 2 t 'sluice'
unset multiplot
""" % (os.path.join(out, "tps_p99.png"), data, data))
    try:
        subprocess.run(["gnuplot", script], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print("analyze.py: no chart: %s" % e, file=sys.stderr)


def cmd_report(a):
    meta, runs, idle = load(a.out)
    ratios = build_ratios(runs)
    targets = build_targets(runs, idle)
    result = {
        "meta": meta,
        "runs": [runs[k] for k in sorted(runs)],
        "idle": [idle[k] for k in sorted(idle)],
        "ratios": ratios,
        "targets": targets,
    }
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    text = write_markdown(os.path.join(a.out, "results.md"), meta, runs, idle, ratios, targets)
    write_chart(a.out, runs)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--jsonl", required=True)
    r.add_argument("--scenario", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--clients", type=int, required=True)
    r.add_argument("--log-prefix", required=True)
    r.add_argument("--err-file")
    r.add_argument("--t1", type=float, required=True)
    r.add_argument("--t2", type=float, required=True)
    r.add_argument("--cpu0", type=float, default=-1)
    r.add_argument("--cpu1", type=float, default=-1)
    r.add_argument("--rss-kb", type=int, default=-1)
    r.add_argument("--server-conns", type=int, default=-1)
    r.add_argument("--rc", type=int, required=True)
    r.add_argument("--note", default="")
    r.add_argument("--t0", type=float, default=0)
    r.add_argument("--tl", type=float, default=0)
    r.add_argument("--te", type=float, default=0)
    r.add_argument("--load", type=float, default=-1)
    r.add_argument("--stopped", type=int, default=0)
    r.set_defaults(fn=cmd_run)
    i = sub.add_parser("idle")
    i.add_argument("--jsonl", required=True)
    i.add_argument("--target", required=True)
    i.add_argument("--requested", type=int, required=True)
    i.add_argument("--ok", type=int, default=-1)
    i.add_argument("--held", type=int, default=-1)
    i.add_argument("--failed", type=int, default=-1)
    i.add_argument("--seconds", type=float, default=-1)
    i.add_argument("--rss0", type=int, default=-1)
    i.add_argument("--rss1", type=int, default=-1)
    i.add_argument("--anon0", type=int, default=-1)
    i.add_argument("--anon1", type=int, default=-1)
    i.add_argument("--cpu0", type=float, default=-1)
    i.add_argument("--cpu1", type=float, default=-1)
    i.add_argument("--server-conns", type=int, default=-1)
    i.add_argument("--rc", type=int, required=True)
    i.add_argument("--err-file")
    i.set_defaults(fn=cmd_idle)
    p = sub.add_parser("report")
    p.add_argument("out")
    p.set_defaults(fn=cmd_report)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
