"""Checks packaging/prometheus/ against the sluice that is built.

- promtool check rules on the recording and alert rules, and promtool test
  rules on their unit tests (input series, expected samples and alerts);
- the Grafana dashboard is JSON, every panel has queries, and every query is
  valid PromQL (promtool checks it as a recording rule, Grafana's variables
  filled in);
- every sluice_* and process_* series that a rule or a panel reads is one
  the real binary exports: its /metrics (started without a reachable
  Postgres; the HELP and TYPE lines name every family) is scraped here.

usage: prometheus_check.py SLUICE_BIN PACKAGING_PROMETHEUS_DIR
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

SERIES = re.compile(r"\b((?:sluice|process)_[a-z0-9_]+)")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    check(proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}{proc.stderr}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exported_families(binary):
    """The series names the binary's /metrics declares (histograms with their suffixes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    port = free_port()
    env.update({"SLUICE_DATABASE_URL": "postgres://app:pw@127.0.0.1:1/app",
                "SLUICE_LISTEN_ADDR": "127.0.0.1", "SLUICE_LISTEN_PORT": str(free_port()),
                "SLUICE_UNIX_SOCKET_DIR": "", "SLUICE_METRICS_LISTEN": f"127.0.0.1:{port}",
                "SLUICE_METRICS_PERCENTILES": "on"})
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        body, deadline = None, time.time() + 20
        while body is None and time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                time.sleep(0.1)
        check(body is not None, f"no /metrics from sluice:\n{proc.stdout.read() if proc.poll() is not None else ''}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M):
        names.add(name)
        if kind == "histogram":
            names.update(name + s for s in ("_bucket", "_sum", "_count"))
    check("sluice_pool_maxwait_seconds" in names and "process_open_fds" in names,
          "the scrape lacks series this check relies on")
    return names


def known(expr, names, where):
    for series in SERIES.findall(expr):
        check(series in names,
              f"{where}: {series} is not exported by sluice (expr: {expr})")


def panels_of(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def grafana_to_promql(expr):
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$instance", ".*").replace("$database", ".*"))


def check_dashboard(path, names, tmp):
    with open(path) as f:
        dashboard = json.load(f)
    exprs = []
    for p in panels_of(dashboard):
        if p.get("type") == "row":
            continue
        targets = [t.get("expr", "") for t in p.get("targets", [])]
        check(targets and all(targets), f"dashboard panel {p.get('title')!r} has no query")
        exprs += [(p["title"], e) for e in targets]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            m = re.fullmatch(r"label_values\((.*), *\w+\)", var["definition"])
            check(m, f"dashboard variable {var['name']}: unexpected query {var['definition']}")
            exprs.append((f"variable {var['name']}", m.group(1)))
    check(len(exprs) >= 10, "the dashboard has fewer than 10 queries")
    for title, expr in exprs:
        known(expr, names, f"dashboard {title!r}")
    # promtool parses every query, as a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query:{i}", "expr": grafana_to_promql(e)}
        for i, (_, e) in enumerate(exprs)]}]}
    out = os.path.join(tmp, "dashboard-rules.yml")
    with open(out, "w") as f:
        yaml.safe_dump(rules, f)
    run("promtool", "check", "rules", out)


def check_rules(path, names):
    with open(path) as f:
        doc = yaml.safe_load(f)
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            if "record" in rule:
                check(rule["record"].startswith("pgbouncer_"),
                      f"{name}: recording rules give pgbouncer_exporter's names")
            known(rule["expr"], names, f"{os.path.basename(path)} {name}")


def main():
    binary, directory = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    try:
        rules = [os.path.join(directory, f) for f in ("recording-rules.yml", "alert-rules.yml")]
        run("promtool", "check", "rules", *rules)
        os.chdir(directory)  # the test files name their rule files relative to themselves
        run("promtool", "test", "rules", "recording-rules.test.yml", "alert-rules.test.yml")
        names = exported_families(binary)
        for path in rules:
            check_rules(path, names)
        with tempfile.TemporaryDirectory() as tmp:
            check_dashboard(os.path.join(directory, "grafana-dashboard.json"), names, tmp)
    except Fail as e:
        print(f"FAIL {e}")
        return 1
    print("ok packaging/prometheus")
    return 0


if __name__ == "__main__":
    sys.exit(main())
