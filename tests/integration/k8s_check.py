"""Checks the Kubernetes examples in packaging/k8s/ beyond "the YAML parses".

For each manifest: the sluice container has readiness (/readyz) and liveness
(/healthz) probes on the metrics port, resource requests and limits, runs as
the image's non-root user, takes its secrets from a Secret in the same file,
and the pod's terminationGracePeriodSeconds covers the preStop hooks plus
shutdown_delay plus shutdown_timeout.  Every container of the pod passes
Pod Security "restricted" (non-root, seccomp RuntimeDefault, no privilege
escalation, all capabilities dropped, no host namespaces or host paths).
Then the manifest's own configuration (environment, Secret and ConfigMap
files) is handed to the real sluice binary, which must start with it and
drain on SIGTERM with exit code 0.  A PodMonitor must select the pods of a
Deployment among the manifests and scrape a port the sluice container names.

usage: k8s_check.py SLUICE_BIN MANIFEST...
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

IMAGE_UID = 10001  # useradd --uid in packaging/Dockerfile
DEFAULTS = {"shutdown_delay": 0.0, "shutdown_timeout": 30.0}  # src/config/options.c
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def seconds(text):
    """A sluice duration ("15s", "250ms", bare = seconds) in seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", str(text))
    check(m and (m.group(2) == "" or m.group(2) in UNITS), f"bad duration {text!r}")
    return float(m.group(1)) * UNITS.get(m.group(2), 1.0)


def prestop_sleep(container):
    """Seconds a container's preStop hook sleeps (0 without one)."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    cmd = hook.get("exec", {}).get("command", [])
    check(len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep",
          f"{container['name']}: preStop is not a plain sleep: {cmd}")
    return float(cmd[1])


def ini_sluice_values(text):
    """key = value pairs of the [sluice] section of an ini file."""
    values, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "sluice" and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def find(docs, kind, name):
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise Fail(f"no {kind} {name} in the manifest")


def secret_value(docs, ref):
    secret = find(docs, "Secret", ref["name"])
    data = secret.get("stringData", {})
    check(ref["key"] in data, f"Secret {ref['name']} has no key {ref['key']}")
    return data[ref["key"]]


def sluice_container(pod):
    """The sluice container, and whether it is a native sidecar."""
    for c in pod.get("initContainers", []):
        if c["name"] == "sluice":
            check(c.get("restartPolicy") == "Always",
                  "sluice as an init container must be a native sidecar (restartPolicy: Always)")
            return c, True
    for c in pod["containers"]:
        if c["name"] == "sluice":
            return c, False
    raise Fail("no container named sluice")


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise Fail(f"sluice has no port named {port}")


def materialize(docs, pod, container, root):
    """Writes the container's ConfigMap and Secret volumes under root.

    Returns (environment, args, setting) where paths point into root and
    setting(key) gives a [sluice] value as the container would see it.
    """
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        target = os.path.join(root, m["mountPath"].lstrip("/"))
        os.makedirs(target, exist_ok=True)
        if "configMap" in vol:
            files = find(docs, "ConfigMap", vol["configMap"]["name"])["data"]
        else:
            files = find(docs, "Secret", vol["secret"]["secretName"]).get("stringData", {})
        for fname, content in files.items():
            with open(os.path.join(target, fname), "w") as f:
                f.write(content)
        mounts[m["mountPath"]] = target

    def local(path):
        for mount, target in mounts.items():
            if path.startswith(mount + "/"):
                return target + path[len(mount):]
        return path

    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = local(str(e["value"]))
        else:
            env[e["name"]] = secret_value(docs, e["valueFrom"]["secretKeyRef"])
    args = [local(a) for a in container.get("args", [])]
    ini = {}
    if args:
        with open(args[0]) as f:
            ini = ini_sluice_values(f.read())

    def setting(key):
        var = "SLUICE_" + key.upper()
        if var in env:
            return env[var]
        return ini.get(key)

    return env, args, setting


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sluice(binary, env, args, name):
    """Starts sluice with the manifest's configuration on free local ports."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    run_env.update(env)
    port = free_port()
    run_env.update({"SLUICE_LISTEN_ADDR": "127.0.0.1", "SLUICE_LISTEN_PORT": str(port),
                    "SLUICE_UNIX_SOCKET_DIR": "",
                    "SLUICE_METRICS_LISTEN": f"127.0.0.1:{free_port()}"})
    proc = subprocess.Popen([binary] + args, env=run_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 20
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    if proc.poll() is not None:
        out = proc.stdout.read()
        raise Fail(f"{name}: sluice did not start with this configuration:\n{out}")
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise Fail(f"{name}: sluice did not exit after SIGTERM")
    out = proc.stdout.read()
    check(code == 0, f"{name}: exit code {code} after SIGTERM:\n{out}")


# Volume types Pod Security "restricted" allows.
RESTRICTED_VOLUMES = {"configMap", "secret", "emptyDir", "projected", "downwardAPI",
                      "persistentVolumeClaim", "ephemeral", "csi"}


def check_restricted(pod, name):
    """Pod Security Standards, profile "restricted", for every container of the pod."""
    psc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        check(not pod.get(key), f"{name}: {key} is not allowed under restricted")
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        check(kinds <= RESTRICTED_VOLUMES, f"{name}: volume {v['name']} is {kinds}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        csc = c.get("securityContext", {})
        who = f"{name}: container {c['name']}"

        def effective(key):
            return csc.get(key, psc.get(key))

        check(effective("runAsNonRoot") is True, f"{who}: runAsNonRoot must be true")
        check(effective("runAsUser") != 0, f"{who}: runAsUser 0")
        seccomp = (effective("seccompProfile") or {}).get("type")
        check(seccomp in ("RuntimeDefault", "Localhost"),
              f"{who}: seccompProfile must be RuntimeDefault (is {seccomp})")
        check(csc.get("allowPrivilegeEscalation") is False,
              f"{who}: allowPrivilegeEscalation must be false")
        check(not csc.get("privileged"), f"{who}: privileged")
        caps = csc.get("capabilities", {})
        check("ALL" in caps.get("drop", []), f"{who}: capabilities must drop ALL")
        check(set(caps.get("add", [])) <= {"NET_BIND_SERVICE"}, f"{who}: adds {caps.get('add')}")


def labels_match(selector, labels):
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        have = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and have not in expr["values"]:
            return False
        if op == "NotIn" and have in expr["values"]:
            return False
        if op == "Exists" and have is None:
            return False
        if op == "DoesNotExist" and have is not None:
            return False
    return True


def check_podmonitor(monitor, deployments, name):
    check(monitor.get("apiVersion") == "monitoring.coreos.com/v1",
          f"{name}: PodMonitor apiVersion is not monitoring.coreos.com/v1")
    selector = monitor["spec"]["selector"]
    endpoints = monitor["spec"].get("podMetricsEndpoints", [])
    check(endpoints, f"{name}: the PodMonitor has no podMetricsEndpoints")
    selected = [d for d in deployments
                if labels_match(selector, d["spec"]["template"]["metadata"].get("labels", {}))]
    check(selected, f"{name}: the PodMonitor selects no Deployment of the examples")
    for dep in selected:
        sluice, _ = sluice_container(dep["spec"]["template"]["spec"])
        for ep in endpoints:
            port_number(sluice, ep["port"])  # a named port of the sluice container
            check(ep.get("path", "/metrics") == "/metrics", f"{name}: scrapes {ep.get('path')}")


def check_deployment(binary, docs, dep, name):
    pod = dep["spec"]["template"]["spec"]
    sluice, native = sluice_container(pod)
    apps = [c for c in pod["containers"] if c["name"] != "sluice"]
    check(apps, f"{name}: no application container beside sluice")

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = sluice.get(probe, {}).get("httpGet")
        check(http and http.get("path") == path, f"{name}: {probe} must GET {path}")
    check_restricted(pod, name)
    res = sluice.get("resources", {})
    check(res.get("requests") and res.get("limits"), f"{name}: sluice needs requests and limits")
    sec = sluice.get("securityContext", {})
    check(sec.get("runAsNonRoot") is True and sec.get("runAsUser") == IMAGE_UID,
          f"{name}: sluice must run as the image's user {IMAGE_UID}")
    check(sec.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")

    with tempfile.TemporaryDirectory() as root:
        env, args, setting = materialize(docs, pod, sluice, root)
        check(any(k.startswith("SLUICE_DATABASE_URL") or k == "SLUICE_AUTH_FILE" for k in env),
              f"{name}: sluice gets neither a database URL nor a user list")
        metrics = setting("metrics_listen") or "0.0.0.0:9127"  # the image's default
        for probe in ("readinessProbe", "livenessProbe"):
            port = port_number(sluice, sluice[probe]["httpGet"]["port"])
            check(metrics.endswith(f":{port}"),
                  f"{name}: {probe} port {port} is not metrics_listen {metrics}")
        delay = seconds(setting("shutdown_delay") or DEFAULTS["shutdown_delay"])
        timeout = seconds(setting("shutdown_timeout") or DEFAULTS["shutdown_timeout"])
        check(timeout > 0, f"{name}: shutdown_timeout 0 waits forever; the kubelet would kill it")
        # A native sidecar is stopped after the app; a classic one alongside it.
        app_stop = max(prestop_sleep(c) for c in apps)
        need = prestop_sleep(sluice) + delay + timeout + (app_stop if native else 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        check(grace > need,
              f"{name}: terminationGracePeriodSeconds {grace} does not cover preStop + "
              f"shutdown_delay + shutdown_timeout = {need:g}s")
        start_sluice(binary, env, args, name)


def main():
    binary, manifests = sys.argv[1], sys.argv[2:]
    failed = 0
    loaded = {}
    for path in manifests:
        with open(path) as f:
            loaded[os.path.basename(path)] = [d for d in yaml.safe_load_all(f) if d]
    all_deployments = [d for docs in loaded.values() for d in docs if d["kind"] == "Deployment"]
    for name, docs in loaded.items():
        try:
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            monitors = [d for d in docs if d["kind"] == "PodMonitor"]
            check(deployments or monitors, f"{name}: no Deployment and no PodMonitor")
            for dep in deployments:
                check_deployment(binary, docs, dep, name)
            for monitor in monitors:
                check_podmonitor(monitor, all_deployments, name)
            print(f"ok {name}")
        except Fail as e:
            print(f"FAIL {e}")
            failed += 1
    if not any(d["kind"] == "PodMonitor" for docs in loaded.values() for d in docs):
        print("FAIL no PodMonitor example among the manifests")
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
