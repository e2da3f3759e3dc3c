"""Lints, renders and checks the zaqar-rs Helm chart with the real Helm engine (helm-python-sdk).

Usage: python helm/check_chart.py CHART_DIR   (run by scripts/helm-check.sh in its venv)

For the default values and each helm/zaqar-rs/ci/*-values.yaml: renders the chart, validates
every manifest strictly against the Kubernetes schemas (kubernetes-validate, oldest and newest
supported versions), and checks what the schemas cannot see: the raft members name exactly the
StatefulSet's pods under the headless Service (running the pods' real start command), every
api-node and pool-node reaches every catalog node, each pool has its Deployment and Service,
selectors match, the PDB and HPA target the right workloads, secrets resolve, containers run
non-root on a read-only root filesystem, and the api-node's TOML file, written by the chart's
own script from secrets holding quotes and backslashes, parses with the settings intended.
The metrics port, ServiceMonitor, PrometheusRule and Grafana dashboard are checked by
helm/check_monitoring.py (the alerts and panels read only metrics the code exports; promtool).
Then it checks that bad values are refused with a clear message.
"""

import base64
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

# Run as a script, this module is also `check_chart` for check_monitoring, which imports it.
sys.modules.setdefault("check_chart", sys.modules[__name__])
import check_monitoring  # noqa: E402
import metric_names  # noqa: E402

RELEASE, NAMESPACE, DOMAIN = "demo", "zaqar", "cluster.local"
OPERATIONS_MD = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.utils.latest_version()]


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def deep_merge(base, override):
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(chart, values):
    with helm.Chart.load(chart) as loaded:
        out = loaded.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [(path, doc) for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs, kind):
    return {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == kind}


def env_of(container):
    return {item["name"]: item for item in container.get("env", [])}


def env_value(container, name):
    item = env_of(container).get(name)
    expect(item is not None, f"container {container['name']} has no {name}")
    return item.get("value")


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.items())


def pod_templates(docs):
    for kind in ("Deployment", "StatefulSet"):
        for name, doc in by_kind(docs, kind).items():
            yield kind, name, doc["spec"]["template"]


def check_schemas(docs):
    for path, doc in docs:
        if doc["apiVersion"] == check_monitoring.CRD_API:  # no schema: check_monitoring checks them
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as err:  # ValidationError and friends: report which object
                raise CheckFailed(f"{path}: {doc['kind']} {doc['metadata']['name']} "
                                  f"fails the Kubernetes {version} schema: {err}") from err


def catalog_start_command(container, pod_name, tmp):
    """Runs the catalog container's command as Kubernetes would ($$ -> $, POD_NAME set),
    with a stand-in `zaqar` that prints its arguments."""
    fake = Path(tmp) / "zaqar"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    command = [part.replace("$$", "$") for part in container["command"]]
    env = {"PATH": f"{tmp}:/usr/bin:/bin", "POD_NAME": pod_name}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)
    expect(result.returncode == 0, f"catalog command failed: {result.stderr}")
    return result.stdout.splitlines()


def check_catalog(docs, values):
    replicas = values["catalog"]["replicas"]
    statefulsets = by_kind(docs, "StatefulSet")
    expect(len(statefulsets) == 1, f"one catalog StatefulSet expected, got {list(statefulsets)}")
    name, sts = next(iter(statefulsets.items()))
    expect(sts["spec"]["replicas"] == replicas, "StatefulSet replicas differ from catalog.replicas")
    headless_name = sts["spec"]["serviceName"]
    headless = by_kind(docs, "Service").get(headless_name)
    expect(headless is not None, f"the StatefulSet's serviceName {headless_name} is not rendered")
    expect(headless["spec"].get("clusterIP") == "None", "the peers' Service is not headless")
    expect(headless["spec"].get("publishNotReadyAddresses") is True,
           "the peers' Service must publish not-ready pods (raft forms before readiness)")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    expect(selects(sts["spec"]["selector"]["matchLabels"], pod_labels), "StatefulSet selector")
    expect(selects(headless["spec"]["selector"], pod_labels), "headless Service selector")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    raft_port, grpc_port = ports["raft"], ports["grpc"]
    hosts = [f"{name}-{i}.{headless_name}.{NAMESPACE}.svc.{DOMAIN}" for i in range(replicas)]
    wanted_members = [f"{i + 1}={host}:{raft_port}" for i, host in enumerate(hosts)]
    members = env_value(container, "ZAQAR_MEMBERS").split(",")
    expect(members == wanted_members, f"ZAQAR_MEMBERS {members} != {wanted_members}")
    expect(env_value(container, "ZAQAR_RAFT_LISTEN") == f"0.0.0.0:{raft_port}", "raft listen")
    with tempfile.TemporaryDirectory() as tmp:
        for ordinal in range(replicas):
            args = catalog_start_command(container, f"{name}-{ordinal}", tmp)
            expect(args[:1] == ["catalog"], f"catalog pod runs {args}")
            node_id = args[args.index("--node-id") + 1]
            advertise = args[args.index("--raft-advertise") + 1]
            expect(f"{node_id}={advertise}" == wanted_members[ordinal],
                   f"pod {ordinal} starts as {node_id}={advertise}, "
                   f"members say {wanted_members[ordinal]}")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data_dir = env_value(container, "ZAQAR_DATA_DIR")
    expect(data_dir.startswith(mounts["data"] + "/"), "the raft data dir is not on the PVC")
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    storage = claims["data"]["spec"]["resources"]["requests"]["storage"]
    expect(storage == values["catalog"]["persistence"]["size"], "PVC size")
    storage_class = values["catalog"]["persistence"]["storageClass"]
    expect(claims["data"]["spec"].get("storageClassName", "") == storage_class, "storageClass")
    scheme = "https" if values["internalTls"]["enabled"] else "http"
    endpoints = [f"{scheme}://{host}:{grpc_port}" for host in hosts]
    for kind, workload, template in pod_templates(docs):
        if kind == "Deployment":
            main = template["spec"]["containers"][0]
            got = env_value(main, "ZAQAR_CATALOG").split(",")
            expect(got == endpoints, f"{workload} reaches catalog nodes {got}, not {endpoints}")
    check_pdb(docs, values, pod_labels)


def check_pdb(docs, values, catalog_labels):
    budget = values["catalog"]["podDisruptionBudget"]
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if not budget["enabled"]:
        expect(not pdbs, "PDB rendered while disabled")
        return
    expect(len(pdbs) == 1, "one catalog PDB expected")
    pdb = next(iter(pdbs.values()))["spec"]
    selector = pdb["selector"]["matchLabels"]
    expect(selects(selector, catalog_labels), "the PDB does not select the catalog pods")
    for kind, workload, template in pod_templates(docs):
        if kind == "Deployment":
            expect(not selects(selector, template["metadata"]["labels"]),
                   f"the PDB also selects {workload}")
    replicas = values["catalog"]["replicas"]
    if budget["minAvailable"] == "majority" and replicas > 1:
        expect(pdb == {"minAvailable": replicas // 2 + 1, "selector": pdb["selector"]},
               f"majority PDB of {replicas} nodes is {pdb}")
    elif not budget["minAvailable"]:
        expect(pdb.get("maxUnavailable") == budget["maxUnavailable"], f"PDB {pdb}")


def check_api_node(docs, values):
    deployments = by_kind(docs, "Deployment")
    api = [d for d in deployments.values()
           if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "api-node"]
    expect(len(api) == 1, "one api-node Deployment expected")
    api = api[0]
    autoscaling = values["apiNode"]["autoscaling"]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    if autoscaling["enabled"]:
        expect(len(hpas) == 1, "one HPA expected")
        spec = next(iter(hpas.values()))["spec"]
        target = spec["scaleTargetRef"]
        expect(target == {"apiVersion": "apps/v1", "kind": "Deployment",
                          "name": api["metadata"]["name"]},
               f"the HPA targets {target}, not the api-node Deployment")
        expect((spec["minReplicas"], spec["maxReplicas"]) ==
               (autoscaling["minReplicas"], autoscaling["maxReplicas"]), "HPA bounds")
        expect("replicas" not in api["spec"], "api-node replicas fixed while the HPA scales it")
        requests = api["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        expect("cpu" in requests, "the HPA's CPU target needs a CPU request on api-nodes")
    else:
        expect(not hpas, "HPA rendered while disabled")
        expect(api["spec"]["replicas"] == values["apiNode"]["replicas"], "api-node replicas")
    container = api["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    expect(env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", "POD_IP")
    port = values["apiNode"]["wsNotificationPort"]
    expect(env["ZAQAR_WS_NOTIFICATION_URL"]["value"] == f"http://$(POD_IP):{port}/",
           "each api-node must advertise its own pod IP for websocket push")
    names = [item["name"] for item in container["env"]]
    expect(names.index("POD_IP") < names.index("ZAQAR_WS_NOTIFICATION_URL"),
           "POD_IP must come before the variable that refers to it as $(POD_IP)")
    service = by_kind(docs, "Service")[f"{api['metadata']['name'][:-len('-node')]}"]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    expect(ports == {"rest": values["apiNode"]["service"]["restPort"],
                     "ws": values["apiNode"]["service"]["wsPort"]}, f"api Service ports {ports}")
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    grace = api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    expect(drain[0] == "sleep" and 0 < int(drain[1]) < grace,
           f"the api-node's preStop drain {drain} must sleep less than its grace period {grace}")
    probe = container["readinessProbe"]["httpGet"]
    if values["auth"]["strategy"] == "noauth":
        headers = {h["name"] for h in probe.get("httpHeaders", [])}
        expect(probe["path"] == "/v2/ping" and {"X-Project-ID", "Client-ID"} <= headers,
               "noauth readiness must be /v2/ping with the headers it requires")
    check_api_toml(docs, api, values)


def check_api_toml(docs, api, values):
    """Runs the init container's script on the rendered ConfigMap, with secrets that need
    escaping, and parses the result as the api-node would (TOML)."""
    init = api["spec"]["template"]["spec"]["initContainers"][0]
    config_map = by_kind(docs, "ConfigMap")[api["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]]
    secrets = {"SIGNED_URL_SECRET_KEY": 'sig"ned\\key', "CATALOG_ADMIN_TOKEN": "t0k3n",
               "KEYSTONE_PASSWORD": 'p"a\\ss word'}
    env = {name: value for name, value in secrets.items() if name in env_of(init)}
    expect("SIGNED_URL_SECRET_KEY" in env, "api-nodes get no signed-URL secret")
    expect(("CATALOG_ADMIN_TOKEN" in env) == values["adminToken"]["enabled"], "admin token")
    with tempfile.TemporaryDirectory() as tmp:
        etc, run = Path(tmp, "etc"), Path(tmp, "run")
        etc.mkdir()
        run.mkdir()
        for key, text in config_map["data"].items():
            (etc / key).write_text(text.replace("/etc/zaqar", str(etc)).replace("/run/zaqar", str(run)))
        result = subprocess.run(["/bin/sh", str(etc / "render-config.sh")], capture_output=True,
                                text=True, timeout=10, env={"PATH": "/usr/bin:/bin", **env})
        expect(result.returncode == 0, f"render-config.sh failed: {result.stderr}")
        expect(oct((run / "api.toml").stat().st_mode & 0o777) == "0o600", "api.toml is not 0600")
        try:
            config = tomllib.loads((run / "api.toml").read_text())
        except tomllib.TOMLDecodeError as err:
            raise CheckFailed(f"the api-node's TOML does not parse: {err}") from err
    expect(config["auth"] == values["auth"]["strategy"], "auth")
    expect(config["signed_url_secret_key"] == secrets["SIGNED_URL_SECRET_KEY"], "signed URL secret")
    if values["adminToken"]["enabled"]:
        expect(config["catalog_admin_token"] == secrets["CATALOG_ADMIN_TOKEN"], "admin token")
    if values["auth"]["strategy"] == "keystone":
        keystone = config["keystone"]
        expect(keystone["password"] == secrets["KEYSTONE_PASSWORD"], "keystone password")
        expect(keystone["auth_url"] == values["auth"]["keystone"]["authUrl"], "keystone auth_url")
        expect(isinstance(keystone["cache_ttl_ms"], int), "cache_ttl_ms must be a TOML integer")
    for key, value in values["apiNode"]["config"].items():
        expect(config[key] == value, f"apiNode.config.{key}: {config.get(key)!r} != {value!r}")
        if isinstance(value, int):
            expect(isinstance(config[key], int), f"apiNode.config.{key} must stay an integer")


def check_pools(docs, values):
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    pool_deployments = {name: d for name, d in deployments.items()
                        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "pool-node"}
    expect(len(pool_deployments) == len(values["pools"]),
           f"{len(values['pools'])} pools but pool-node Deployments {sorted(pool_deployments)}")
    for pool in values["pools"]:
        matches = [d for d in pool_deployments.values()
                   if env_value(d["spec"]["template"]["spec"]["containers"][0], "ZAQAR_NAME") == pool["name"]]
        expect(len(matches) == 1, f"pool {pool['name']}: {len(matches)} Deployments")
        deployment = matches[0]
        expect(deployment["spec"]["replicas"] == pool.get("replicas", 1), f"pool {pool['name']} replicas")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = services.get(deployment["metadata"]["name"])
        expect(service is not None, f"pool {pool['name']} has no Service")
        expect(selects(service["spec"]["selector"], labels), f"pool {pool['name']} Service selector")
        others = [n for n, d in pool_deployments.items() if d is not deployment
                  and selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        expect(not others, f"pool {pool['name']}'s Service also selects {others}")
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
        scheme = "https" if values["internalTls"]["enabled"] else "http"
        advertise = f"{scheme}://{service['metadata']['name']}.{NAMESPACE}.svc.{DOMAIN}:{service['spec']['ports'][0]['port']}"
        expect(env_value(container, "ZAQAR_ADVERTISE") == advertise, f"pool {pool['name']} advertise")
        expect(service["spec"]["ports"][0]["port"] == port, f"pool {pool['name']} port")
        expect(env_value(container, "ZAQAR_WEIGHT") == str(pool.get("weight", 100)), "weight")
        group = env_of(container).get("ZAQAR_GROUP", {}).get("value", "")
        expect(group == pool.get("flavor", ""), f"pool {pool['name']} group {group!r}")
        uri = env_of(container)["ZAQAR_URI"]
        if pool.get("uriSecret", {}).get("name"):
            expect(uri["valueFrom"]["secretKeyRef"]["name"] == pool["uriSecret"]["name"], "uriSecret")
        else:
            expect(uri["value"] == pool["uri"], f"pool {pool['name']} uri")
        has_key = "ZAQAR_ENCRYPTION_KEY" in env_of(container)
        expect(has_key == values["encryption"]["enabled"], "pool-node encryption key")


def check_internal_tls(docs, values):
    """With internalTls: every role's pod mounts the Secret, and its TOML has the tables
    that make it serve and check TLS (mutual: show and require certificates)."""
    tls = values["internalTls"]
    if not tls["enabled"]:
        return
    config_maps = by_kind(docs, "ConfigMap")
    directory = tls["mountPath"].rstrip("/")
    files = {name: f"{directory}/{name}" for name in ("tls.crt", "tls.key", "ca.crt")}
    for kind, workload, template in pod_templates(docs):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        expect(volumes.get("internal-tls", {}).get("secret", {}).get("secretName") == tls["secretName"],
               f"{workload} does not mount the internal TLS Secret")
        main = spec["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in main.get("volumeMounts", [])}
        expect(mounts.get("internal-tls") == tls["mountPath"], f"{workload} mounts it at {mounts}")
        role = template["metadata"]["labels"]["app.kubernetes.io/component"]
        if role == "api-node":
            config_map = config_maps[volumes["config"]["configMap"]["name"]]
            config = tomllib.loads(config_map["data"]["api.toml"])
        else:
            config_map = config_maps[volumes["config"]["configMap"]["name"]]
            config = tomllib.loads(next(iter(config_map["data"].values())))
        if role != "api-node":
            served = {"cert_file": files["tls.crt"], "key_file": files["tls.key"]}
            if tls["mutual"]:
                served["client_ca_file"] = files["ca.crt"]
            expect(config.get("tls") == served, f"{workload} [tls] {config.get('tls')} != {served}")
        if role != "catalog":
            checked = {"ca_file": files["ca.crt"]}
            if tls["mutual"]:
                checked.update(cert_file=files["tls.crt"], key_file=files["tls.key"])
            expect(config.get("grpc_tls") == checked,
                   f"{workload} [grpc_tls] {config.get('grpc_tls')} != {checked}")


def check_secrets_and_security(docs, values):
    secrets = by_kind(docs, "Secret")
    existing = {values[s]["existingSecret"]
                for s in ("signedUrl", "encryption", "adminToken", "clusterToken")}
    existing |= {values["auth"]["keystone"]["existingSecret"]}
    existing |= {p.get("uriSecret", {}).get("name") for p in values["pools"]}
    existing.discard("")
    existing.discard(None)
    for kind, workload, template in pod_templates(docs):
        spec = template["spec"]
        expect(spec["securityContext"].get("runAsNonRoot") is True, f"{workload} may run as root")
        token = [item for item in spec["containers"][0].get("env", [])
                 if item["name"] == "ZAQAR_CLUSTER_TOKEN"]
        expect(token and "secretKeyRef" in token[0].get("valueFrom", {}),
               f"{workload} gets no cluster token from a Secret")
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container.get("securityContext", {})
            expect(context.get("readOnlyRootFilesystem") is True, f"{workload}: writable root fs")
            expect(context.get("allowPrivilegeEscalation") is False, f"{workload}: escalation")
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["name"] in secrets:
                    expect(ref["key"] in secrets[ref["name"]].get("data", {}),
                           f"{workload} reads key {ref['key']} missing from Secret {ref['name']}")
                else:
                    expect(ref["name"] in existing, f"{workload} reads unknown Secret {ref['name']}")
            named_ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                if probe in container:
                    action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                    expect(action["port"] in named_ports, f"{workload} {probe} port")
    for name, secret in secrets.items():
        data = {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}
        if "encryption-key" in data:
            key = base64.b64decode(data["encryption-key"], validate=True)
            expect(len(key) == 32, f"the encryption key is base64 of {len(key)} bytes, not 32")
        if "admin-token" in data:
            expect(re.fullmatch(rb"[!-~]+", data["admin-token"]), "admin token: printable, no spaces")
        if "cluster-token" in data:
            expect(re.fullmatch(rb"[!-~]{16,}", data["cluster-token"]),
                   "cluster token: 16 printable characters or more, no spaces")
    for name, service in by_kind(docs, "Service").items():
        matched = [t for _, _, t in pod_templates(docs) if selects(service["spec"]["selector"], t["metadata"]["labels"])]
        expect(matched, f"Service {name} selects no pods")
        for port in service["spec"]["ports"]:
            names = {p["name"] for t in matched for c in t["spec"]["containers"] for p in c.get("ports", [])}
            expect(port["targetPort"] in names, f"Service {name} targets unknown port {port['targetPort']}")


def allowed(docs, source_labels, target_template, port_name):
    """Whether the rendered NetworkPolicies let a pod with source_labels (None: outside
    the namespace's pods) reach port_name of target_template's pods."""
    policies = [p["spec"] for p in by_kind(docs, "NetworkPolicy").values()
                if selects(p["spec"]["podSelector"].get("matchLabels", {}), target_template["metadata"]["labels"])]
    if not policies:
        return True
    names = {p["name"] for c in target_template["spec"]["containers"] for p in c.get("ports", [])}
    for policy in policies:
        for rule in policy.get("ingress", []):
            ports = [p["port"] for p in rule.get("ports", [])]
            for port in ports:
                expect(port in names, f"a NetworkPolicy names port {port}, unknown to its pods")
            if ports and port_name not in ports:
                continue
            peers = rule.get("from")
            if peers is None:
                return True
            for peer in peers:
                if source_labels is not None and set(peer) == {"podSelector"} and \
                        selects(peer["podSelector"].get("matchLabels", {}), source_labels):
                    return True
    return False


def check_network_policies(docs, values):
    if not values["networkPolicy"]["enabled"]:
        expect(not by_kind(docs, "NetworkPolicy"), "NetworkPolicies rendered while disabled")
        return
    templates = {}
    for _, _, template in pod_templates(docs):
        templates.setdefault(template["metadata"]["labels"]["app.kubernetes.io/component"], template)
    labels = {name: t["metadata"]["labels"] for name, t in templates.items()}
    flows = [  # (from, to, port, allowed)
        ("api-node", "catalog", "grpc", True), ("pool-node", "catalog", "grpc", True),
        ("catalog", "catalog", "raft", True), ("api-node", "pool-node", "grpc", True),
        ("pool-node", "api-node", "ws-notify", True), (None, "api-node", "rest", True),
        (None, "api-node", "ws", True), ("api-node", "catalog", "raft", False),
        (None, "api-node", "ws-notify", False), (None, "pool-node", "grpc", False),
        (None, "catalog", "grpc", False), (None, "catalog", "raft", False),
    ]
    for source, target, port, wanted in flows:
        got = allowed(docs, labels.get(source), templates[target], port)
        expect(got == wanted, f"NetworkPolicy: {source or 'outside'} -> {target}:{port} "
                              f"{'blocked' if wanted else 'allowed'}")


REFUSED = [
    ({"catalog": {"replicas": 2}}, "catalog.replicas must be odd"),
    ({"clusterToken": {"token": "short"}}, "at '/clusterToken/token'"),
    ({"auth": {"strategy": "keystone"}}, "authUrl is required"),
    ({"auth": {"strategy": "ldap"}}, "at '/auth/strategy': value must be one of"),
    ({"pools": [{"name": "p", "uri": "memcached://m"}]}, "at '/pools/0/uri'"),
    ({"pools": [{"name": "p", "uri": "redis://r", "wieght": 5}]}, "additional properties 'wieght'"),
    ({"catalog": {"persistence": {"size": "lots"}}}, "at '/catalog/persistence/size'"),
    ({"pools": [{"name": "a", "uri": "redis://r"}, {"name": "a", "uri": "redis://s"}]}, "listed twice"),
    ({"pools": [{"name": "Pool_1", "uri": "redis://r"}]}, "must be a DNS label"),
    ({"pools": [{"name": "p"}]}, "needs uri or uriSecret.name"),
    ({"pools": []}, "at least one pool"),
    ({"apiNode": {"config": {"listen": "0.0.0.0:1"}}}, "apiNode.config.listen is set by the chart"),
    ({"catalog": {"podDisruptionBudget": {"minAvailable": "most"}}}, "minAvailable must be"),
    ({"internalTls": {"enabled": True}}, "internalTls.secretName is required"),
    ({"internalTls": {"enabled": True, "secretName": "t"}, "catalog": {"config": {"tls": {"cert_file": "c"}}}},
     "catalog.config.tls is set by the chart"),
    ({"metrics": {"port": 8888}}, "metrics.port 8888 is also apiNode.service.restPort"),
    ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "need metrics.enabled"),
    ({"metrics": {"prometheusRule": {"enabled": True, "poolReportAgeSeconds": 10}}},
     "must exceed twice poolNode.healthReportInterval"),
    ({"metrics": {"serviceMonitor": {"intervall": "1m"}}}, "additional properties 'intervall'"),
    ({"metrics": {"prometheusRule": {"http5xxRatio": 5}}}, "at '/metrics/prometheusRule/http5xxRatio'"),
]


def check_refusals(chart, defaults):
    for override, message in REFUSED:
        try:
            render(chart, deep_merge(defaults, override))
        except helm.HelmError as err:
            expect(message in str(err), f"{override} refused with {err}, expected {message!r}")
        else:
            raise CheckFailed(f"values {override} were accepted; expected: {message}")


def main():
    chart = Path(sys.argv[1])
    lint = helm.lint(str(chart), strict=True)
    problems = [m for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
    expect(not problems, f"helm lint: {problems}")
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    exported = metric_names.exported_metrics(OPERATIONS_MD.read_text())
    expect(len(exported) > 20, f"no metric table read from {OPERATIONS_MD}")
    sets = [("default", {})] + [(path.name, yaml.safe_load(path.read_text()))
                                for path in sorted((chart / "ci").glob("*-values.yaml"))]
    for name, override in sets:
        values = deep_merge(defaults, override)
        lint = helm.lint(str(chart), override, strict=True)
        expect(not lint["errors"], f"helm lint with {name}: {lint['errors']}")
        docs = render(chart, override)
        check_schemas(docs)
        check_catalog(docs, values)
        check_api_node(docs, values)
        check_pools(docs, values)
        check_internal_tls(docs, values)
        check_secrets_and_security(docs, values)
        check_network_policies(docs, values)
        monitoring = check_monitoring.check_monitoring(docs, values, exported)
        kinds = sorted({doc["kind"] for _, doc in docs})
        print(f"ok  {name}: {len(docs)} objects ({', '.join(kinds)}), "
              f"catalog x{values['catalog']['replicas']}, {len(values['pools'])} pool(s), {monitoring}")
    check_refusals(chart, defaults)
    print(f"ok  {len(REFUSED)} bad value sets refused")
    print(f"helm chart OK (Helm {helm.helm_sdk_version()}, schemas {', '.join(KUBE_VERSIONS)})")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as err:
        print(f"FAIL {err}", file=sys.stderr)
        sys.exit(1)
