"""Checks the Kubernetes examples in packaging/k8s/ beyond "the YAML parses".

For each manifest: the sluice container has readiness (/readyz) and liveness
(/healthz) probes on the metrics port, resource requests and limits, runs as
the image's non-root user, takes its secrets from a Secret in the same file,
and the pod's terminationGracePeriodSeconds covers the preStop hooks plus
shutdown_delay plus shutdown_timeout.  Then the manifest's own configuration
(environment, Secret and ConfigMap files) is handed to the real sluice binary,
which must start with it and drain on SIGTERM with exit code 0.

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


def check_deployment(binary, docs, dep, name):
    pod = dep["spec"]["template"]["spec"]
    sluice, native = sluice_container(pod)
    apps = [c for c in pod["containers"] if c["name"] != "sluice"]
    check(apps, f"{name}: no application container beside sluice")

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http = sluice.get(probe, {}).get("httpGet")
        check(http and http.get("path") == path, f"{name}: {probe} must GET {path}")
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
    for path in manifests:
        name = os.path.basename(path)
        try:
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            check(deployments, f"{name}: no Deployment")
            for dep in deployments:
                check_deployment(binary, docs, dep, name)
            print(f"ok {name}")
        except Fail as e:
            print(f"FAIL {e}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
