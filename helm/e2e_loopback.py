"""Runs the chart's rendered pods as real `zaqar` processes, each on its own loopback address.

Usage: python helm/e2e_loopback.py CHART_DIR ZAQAR_BIN   (run by scripts/helm-check.sh when
ZAQAR_BIN is set)

It re-executes itself in private network, mount and PID namespaces (`unshare`, no cluster, no
root on the host needed), where /etc/hosts maps the chart's DNS names (catalog pods under the
headless Service, pool-node Services) to per-pod addresses 127.0.x.y. Each process gets the
container's rendered command, args and environment (secrets read from the rendered Secret,
POD_NAME / POD_IP from the downward API, $(VAR) expanded as the kubelet does); only the
"0.0.0.0" of listen addresses becomes the pod's address, the data dir a temporary directory,
and the pool stores SQLite files. Then it checks: the three raft nodes form one cluster from
ZAQAR_MEMBERS, both pools register through the catalog endpoints and report health, the
api-node's readiness probe passes, a queue works end to end, websocket push reaches the
subscriber through the pod-IP notification URL (tests/compat/ws_push.py), every process serves
its metrics on the rendered metrics port (the catalog nodes count one raft leader and report
both pools' age), and with one catalog node killed new queues are still placed. It does so twice: with plain gRPC between the roles, and with
internalTls (mTLS, certificates made here with openssl for the chart's DNS names).
Everything stops with the PID namespace.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import check_chart as chart  # noqa: E402

VALUES = {
    "catalog": {"replicas": 3},
    # /v2/health (the readiness check below) and /v2/pools exist in admin mode only.
    "apiNode": {"config": {"admin_mode": True}},
    "pools": [{"name": "p1", "uri": "redis://unused:6379/0"},
              {"name": "p2", "uri": "redis://unused:6379/0", "weight": 50}],
}
DEADLINE_SECONDS = 40
ADMIN = {"X-Project-ID": "e2e", "X-Roles": "admin", "Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
         "Content-Type": "application/json"}
WS_PUSH = Path(__file__).resolve().parents[1] / "tests" / "compat" / "ws_push.py"


def fail(message):
    raise chart.CheckFailed(message)


def expand(value, env):
    """The kubelet's $(VAR) expansion ($$ escapes a $)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def container_env(container, secrets, pod_name, pod_ip):
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(item["value"], env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.name": pod_name, "status.podIP": pod_ip}[field]
        else:
            ref = source["secretKeyRef"]
            env[item["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    for name, value in env.items():
        if name.startswith("ZAQAR_") and name.endswith("LISTEN"):
            env[name] = value.replace("0.0.0.0:", f"{pod_ip}:")
    return env


class Cluster:
    def __init__(self, tmp, binary):
        self.tmp, self.processes = Path(tmp), {}
        bindir = self.tmp / "bin"
        bindir.mkdir()
        (bindir / "zaqar").symlink_to(binary)
        self.path = f"{bindir}:/usr/bin:/bin"

    def start(self, name, container, env, workdir):
        command = [expand(part, env) for part in container["command"] + container.get("args", [])]
        log = open(self.tmp / f"{name}.log", "w")
        full_env = {"PATH": self.path, "HOME": str(workdir), **env}
        self.processes[name] = subprocess.Popen(command, env=full_env, cwd=workdir,
                                                stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name):
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)

    def log(self, name):
        return (self.tmp / f"{name}.log").read_text()[-1500:]

    def check_alive(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                fail(f"{name} exited with {process.returncode}:\n{self.log(name)}")


def make_certificates(directory, names):
    """A CA (ca.crt) and one certificate for every role (tls.crt, tls.key: server and
    client), valid for the DNS `names`, as the chart's internalTls Secret holds them."""
    directory.mkdir()

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=e2e-ca",
            "-days", "2")
    openssl("req", *curve, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=zaqar-e2e")
    (directory / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName={','.join('DNS:' + name for name in names)}\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.crt", "-days", "2", "-extfile", "ext.cnf")


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return None, str(err)


def scrape(address):
    """{series name: [(labels text, value)]} of http://ADDRESS/metrics, or None."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            text = response.read().decode() if response.status == 200 else ""
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    samples = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(zaqar_\w+)(\{.*\})? (\S+)", line)
        if match:
            samples.setdefault(match.group(1), []).append((match.group(2) or "", float(match.group(3))))
    return samples or None


def wait_for(what, probe, cluster, deadline):
    while time.monotonic() < deadline:
        cluster.check_alive()
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    fail(f"timed out waiting for {what}")


class LoopbackDeployment:
    """The rendered chart's pods as processes: catalog pod i on 127.0.1.(i+1), pool k's
    pod on 127.0.2.k, the api-node pod on 127.0.3.1."""

    API_IP = "127.0.3.1"

    def __init__(self, docs, cluster, tmp, tls):
        self.cluster, self.tmp, self.tls = cluster, Path(tmp), tls
        self.metrics = {}  # process name: its metrics address, when the chart sets one
        self.secrets = chart.by_kind(docs, "Secret")
        self.sts = next(iter(chart.by_kind(docs, "StatefulSet").values()))
        deployments = chart.by_kind(docs, "Deployment").values()
        self.pools = {d["spec"]["template"]["metadata"]["labels"]["zaqar-rs/pool"]: d
                      for d in deployments if "zaqar-rs/pool" in d["spec"]["template"]["metadata"]["labels"]}
        self.api = next(d for d in deployments if d["metadata"]["name"].endswith("-api-node"))
        self.config_maps = chart.by_kind(docs, "ConfigMap")
        self.catalog_pods = [(f"{self.sts['metadata']['name']}-{i}", f"127.0.1.{i + 1}")
                             for i in range(self.sts["spec"]["replicas"])]
        self.pool_pods = [(name, self.pools[name], f"127.0.2.{k + 1}") for k, name in enumerate(sorted(self.pools))]

    def bind_hosts(self):
        """Points the chart's DNS names at the pods' addresses (private mount namespace)."""
        domain = f"{chart.NAMESPACE}.svc.{chart.DOMAIN}"
        lines = ["127.0.0.1 localhost"]
        lines += [f"{ip} {pod}.{self.sts['spec']['serviceName']}.{domain}" for pod, ip in self.catalog_pods]
        lines += [f"{ip} {deployment['metadata']['name']}.{domain}" for _, deployment, ip in self.pool_pods]
        hosts = self.tmp / "hosts"
        hosts.write_text("\n".join(lines) + "\n")
        subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    def certificate_names(self):
        """The DNS names the roles reach each other by: pool-node Services, catalog pods."""
        domain = f"{chart.NAMESPACE}.svc.{chart.DOMAIN}"
        return [f"*.{domain}", f"*.{self.sts['spec']['serviceName']}.{domain}"]

    def configured(self, template, container, etc):
        """The container with its config ConfigMap (if any) written to `etc` instead of
        /etc/zaqar."""
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        if "config" not in volumes:
            return container
        etc.mkdir(parents=True, exist_ok=True)
        for key, text in self.config_maps[volumes["config"]["configMap"]["name"]]["data"].items():
            (etc / key).write_text(text)
        container = dict(container)
        for field in ("command", "args"):
            if field in container:
                container[field] = [part.replace("/etc/zaqar/", f"{etc}/") for part in container[field]]
        return container

    def start_catalog(self):
        template = self.sts["spec"]["template"]
        for pod, ip in self.catalog_pods:
            workdir = self.tmp / pod
            workdir.mkdir()
            container = self.configured(template, template["spec"]["containers"][0], workdir / "etc")
            env = container_env(container, self.secrets, pod, ip)
            env["ZAQAR_DATA_DIR"] = str(workdir / "catalog")
            self.cluster.start(pod, container, env, workdir)
            self.metrics[pod] = env.get("ZAQAR_METRICS_LISTEN")

    def start_pools(self):
        for name, deployment, ip in self.pool_pods:
            template = deployment["spec"]["template"]
            container = self.configured(template, template["spec"]["containers"][0],
                                        self.tmp / f"pool-{name}-etc")
            env = container_env(container, self.secrets, f"pool-{name}", ip)
            env["ZAQAR_URI"] = f"sqlite://{self.tmp}/{name}.db"
            self.cluster.start(f"pool-{name}", container, env, self.tmp)
            self.metrics[f"pool-{name}"] = env.get("ZAQAR_METRICS_LISTEN")

    def start_api(self):
        """Runs the init container's script on the ConfigMap, then the api-node."""
        spec = self.api["spec"]["template"]["spec"]
        config_map = self.config_maps[spec["volumes"][0]["configMap"]["name"]]
        etc, run_dir = self.tmp / "etc", self.tmp / "run"
        etc.mkdir()
        run_dir.mkdir()
        for key, text in config_map["data"].items():
            (etc / key).write_text(text.replace("/etc/zaqar", str(etc)).replace("/run/zaqar", str(run_dir)))
        self.init_env = container_env(spec["initContainers"][0], self.secrets, "api-0", self.API_IP)
        subprocess.run(["/bin/sh", str(etc / "render-config.sh")], check=True, capture_output=True,
                       env={"PATH": self.cluster.path, **self.init_env}, timeout=10)
        container = dict(spec["containers"][0])
        container["args"] = [arg.replace("/run/zaqar", str(run_dir)) for arg in container["args"]]
        self.api_container = container
        self.api_env = container_env(container, self.secrets, "api-0", self.API_IP)
        self.cluster.start("api-node", container, self.api_env, self.tmp)
        self.metrics["api-node"] = self.api_env.get("ZAQAR_METRICS_LISTEN")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.rest, self.ws = f"http://{self.API_IP}:{ports['rest']}", f"ws://{self.API_IP}:{ports['ws']}"

    def check(self, deadline):
        cluster, rest = self.cluster, self.rest
        probe = self.api_container["readinessProbe"]["httpGet"]
        probe_headers = {h["name"]: h["value"] for h in probe["httpHeaders"]}
        wait_for("the api-node's readiness probe",
                 lambda: http("GET", rest + probe["path"], headers=probe_headers)[0] == 204, cluster, deadline)

        def healthy_pools():
            status, report = http("GET", rest + "/v2/health", headers=ADMIN)
            ok = status == 200 and report.get("catalog_reachable") and all(
                isinstance(report.get(name), dict) and report[name].get("report", {}).get("healthy")
                for name in self.pools)
            return ok

        wait_for("every pool registered and reporting health", healthy_pools, cluster, deadline)
        admin_env = {"PATH": cluster.path, "ZAQAR_CATALOG": self.api_env["ZAQAR_CATALOG"],
                     "ZAQAR_ADMIN_TOKEN": self.init_env["CATALOG_ADMIN_TOKEN"],
                     "ZAQAR_CLUSTER_TOKEN": self.api_env["ZAQAR_CLUSTER_TOKEN"]}
        if self.tls:
            admin_env.update(ZAQAR_CA_FILE=str(self.tls / "ca.crt"), ZAQAR_CERT_FILE=str(self.tls / "tls.crt"),
                             ZAQAR_KEY_FILE=str(self.tls / "tls.key"))
        raft = subprocess.run(["zaqar", "admin", "--json", "status"], capture_output=True, text=True, timeout=15,
                              env=admin_env)
        chart.expect(raft.returncode == 0, f"zaqar admin status: {raft.stderr}")
        members = sorted(set(re.findall(r"catalog-\d\.", raft.stdout)))
        chart.expect(len(members) == len(self.catalog_pods), f"raft members {members}: {raft.stdout[:500]}")
        for queue in ("e2e-a", "e2e-b"):
            chart.expect(http("PUT", f"{rest}/v2/queues/{queue}", {}, ADMIN)[0] == 201, f"create {queue}")
        status, posted = http("POST", f"{rest}/v2/queues/e2e-a/messages",
                              {"messages": [{"body": {"n": 1}, "ttl": 300}]}, ADMIN)
        chart.expect(status == 201, f"post: {status} {posted}")
        status, claimed = http("POST", f"{rest}/v2/queues/e2e-a/claims", {"ttl": 60, "grace": 60}, ADMIN)
        bodies = [m["body"] for m in claimed["messages"]] if status == 201 else claimed
        chart.expect(bodies == [{"n": 1}], f"claim: {status} {bodies}")
        push = subprocess.run([sys.executable, str(WS_PUSH), self.ws, rest], capture_output=True, text=True,
                              timeout=60)
        chart.expect(push.returncode == 0, f"websocket push through the pod-IP notification URL: "
                                           f"{push.stdout}{push.stderr}")
        self.check_metrics(deadline)
        cluster.stop(self.catalog_pods[0][0])
        wait_for("a queue placed with catalog node 1 down",
                 lambda: http("PUT", f"{rest}/v2/queues/e2e-c", {}, ADMIN)[0] in (201, 204), cluster, deadline)
        status, listed = http("GET", f"{rest}/v2/queues", headers=ADMIN)
        names = sorted(q["name"] for q in listed["queues"]) if status == 200 else listed
        chart.expect(names == ["e2e-a", "e2e-b", "e2e-c"], f"queues {names}")


    def check_metrics(self, deadline):
        """Every process serves its metrics where the chart says; the catalog's show one
        raft leader and both pools' report age, the api-node's the requests made."""
        ports = {p["name"] for p in self.api_container["ports"]}
        chart.expect(all(self.metrics.values()) and "metrics" in ports, f"metrics addresses {self.metrics}")

        def scraped():
            got = {name: scrape(address) for name, address in self.metrics.items()}
            leaders = sum(value for name, _ in self.catalog_pods
                          for _, value in (got[name] or {}).get("zaqar_raft_is_leader", []))
            ages = (got[self.catalog_pods[0][0]] or {}).get("zaqar_pool_report_age_seconds", [])
            return all(got.values()) and leaders == 1 and len(ages) == len(self.pools) \
                and "zaqar_http_requests_total" in got["api-node"]
        wait_for("every process's metrics (one raft leader, both pools' report age)", scraped,
                 self.cluster, deadline)


def run(chart_dir, binary, tls):
    """One loopback run of the chart; with `tls`, internalTls on (mTLS between the roles)."""
    with tempfile.TemporaryDirectory() as tmp:
        values = VALUES
        tls_dir = Path(tmp) / "tls" if tls else None
        if tls:
            values = {**VALUES, "internalTls": {"enabled": True, "secretName": "e2e-internal-tls",
                                                "mountPath": str(tls_dir)}}
        docs = chart.render(chart_dir, values)
        cluster = Cluster(tmp, binary)
        deployment = LoopbackDeployment(docs, cluster, tmp, tls_dir)
        if tls:
            make_certificates(tls_dir, deployment.certificate_names())
        try:
            deployment.bind_hosts()
            deployment.start_catalog()
            deployment.start_pools()
            deployment.start_api()
            deployment.check(time.monotonic() + DEADLINE_SECONDS)
        except chart.CheckFailed as err:
            logs = "\n".join(f"--- {name}\n{cluster.log(name)}" for name in list(cluster.processes))
            raise chart.CheckFailed(f"{err}\n{logs}") from err
        finally:
            for name in list(cluster.processes):
                cluster.stop(name)
            subprocess.run(["umount", "/etc/hosts"], check=False)
    print(f"ok  loopback cluster from the rendered chart{' with internal mTLS' if tls else ''}: "
          "3 raft catalog nodes, 2 pools, api-node; "
          "queue, post, claim, websocket push, metrics of every process, and placement with a catalog node down")


def main():
    chart_dir, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    if os.environ.get("ZAQAR_HELM_E2E_INSIDE") != "1":
        command = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork",
                   "--kill-child", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                   sys.executable, __file__, chart_dir, binary]
        result = subprocess.run(command, env={**os.environ, "ZAQAR_HELM_E2E_INSIDE": "1"},
                                timeout=2 * DEADLINE_SECONDS + 120)
        sys.exit(result.returncode)
    try:
        run(chart_dir, binary, tls=False)
        run(chart_dir, binary, tls=True)
    except chart.CheckFailed as err:
        print(f"FAIL {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
