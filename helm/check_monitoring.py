"""The chart's monitoring, checked for each rendered value set by helm/check_chart.py.

With metrics on, every role's container serves them (ZAQAR_METRICS_LISTEN) on a `metrics`
port that exactly one ClusterIP Service exposes, the ServiceMonitor selects exactly those
Services and scrapes that port, and the NetworkPolicies open it to metrics.allowedFrom only.
The PrometheusRule and the Grafana dashboard read only metrics the code exports (the table of
docs/operations.md, read by metric_names), with labels they have, each selector carrying the
release's matchers; promtool checks the rule groups and runs every alert's expression on the
series of an unhealthy and of a healthy cluster. prometheus-operator's kinds have no schema
in kubernetes-validate: their structure is checked here.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

import check_chart as chart
import metric_names

CRD_API = "monitoring.coreos.com/v1"


def metrics_services(docs):
    """The Services exposing a `metrics` port."""
    return {name: s for name, s in chart.by_kind(docs, "Service").items()
            if "metrics" in {p["name"] for p in s["spec"]["ports"]}}


def check_metrics_ports(docs, values):
    """Every role's container listens for metrics on its `metrics` port, exposed by exactly
    one Service (scraped once), never by the api-node's public Service."""
    metrics, services = values["metrics"], metrics_services(docs)
    for _, workload, template in chart.pod_templates(docs):
        container = template["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        listen = chart.env_of(container).get("ZAQAR_METRICS_LISTEN", {}).get("value")
        if not metrics["enabled"]:
            chart.expect(listen is None and "metrics" not in ports, f"{workload} serves metrics while disabled")
            continue
        chart.expect(listen == f"0.0.0.0:{metrics['port']}", f"{workload}: ZAQAR_METRICS_LISTEN is {listen}")
        chart.expect(ports.get("metrics") == metrics["port"], f"{workload} has no metrics port {metrics['port']}")
        labels = template["metadata"]["labels"]
        exposing = [n for n, s in services.items() if chart.selects(s["spec"]["selector"], labels)]
        chart.expect(len(exposing) == 1, f"{workload}'s metrics port is exposed by Services {exposing}, not by one")
    if not metrics["enabled"]:
        chart.expect(not services, f"Services {sorted(services)} expose metrics while disabled")
    for name, service in services.items():
        port = next(p for p in service["spec"]["ports"] if p["name"] == "metrics")
        chart.expect(port["targetPort"] == "metrics" and port["port"] == metrics["port"], f"Service {name}: {port}")
        chart.expect(service["spec"].get("type", "ClusterIP") == "ClusterIP", f"Service {name} publishes the metrics")


def the_one(docs, kind, enabled):
    """The (name, document) of the one document of `kind` when `enabled`; None, after
    checking that there is no such document, when not."""
    found = chart.by_kind(docs, kind)
    if not enabled:
        chart.expect(not found, f"{kind} rendered while disabled")
        return None
    chart.expect(len(found) == 1, f"one {kind} expected, got {sorted(found)}")
    return next(iter(found.items()))


def check_service_monitor(docs, values):
    """One ServiceMonitor (by structure: no schema) scraping the `metrics` port of exactly the
    Services that expose it, in the release's namespace, at metrics.serviceMonitor.interval."""
    wanted = values["metrics"]["serviceMonitor"]
    found = the_one(docs, "ServiceMonitor", wanted["enabled"])
    if not found:
        return
    name, monitor = found
    chart.expect(monitor["apiVersion"] == CRD_API, f"ServiceMonitor apiVersion {monitor['apiVersion']}")
    chart.expect(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63,
                 f"ServiceMonitor name {name}")
    labels = monitor["metadata"]["labels"]
    chart.expect(chart.selects(wanted["labels"], labels)
                 and labels.get("app.kubernetes.io/instance") == chart.RELEASE,
                 f"ServiceMonitor labels {labels}")
    spec = monitor["spec"]
    chart.expect(set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels"},
                 f"ServiceMonitor spec keys {sorted(spec)}")
    namespaces = {"matchNames": [chart.NAMESPACE]}
    chart.expect(spec.get("namespaceSelector", namespaces) == namespaces,
                 f"ServiceMonitor namespaceSelector {spec.get('namespaceSelector')}")
    selector = spec["selector"]["matchLabels"]
    selected = {n for n, s in chart.by_kind(docs, "Service").items()
                if chart.selects(selector, s["metadata"]["labels"])}
    chart.expect(selected == set(metrics_services(docs)),
                 f"the ServiceMonitor selects Services {sorted(selected)}, not {sorted(metrics_services(docs))}")
    chart.expect(len(spec["endpoints"]) == 1, f"ServiceMonitor endpoints {spec['endpoints']}")
    endpoint = spec["endpoints"][0]
    chart.expect(set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}, f"endpoint {endpoint}")
    chart.expect(endpoint["port"] == "metrics" and endpoint.get("path", "/metrics") == "/metrics"
                 and endpoint.get("scheme", "http") == "http", f"ServiceMonitor endpoint {endpoint}")
    chart.expect(endpoint["interval"] == wanted["interval"], f"scrape interval {endpoint['interval']}")


def check_metrics_network(docs, values):
    """The metrics port is open to metrics.allowedFrom (else the namespace's pods) and only to them."""
    if not (values["networkPolicy"]["enabled"] and values["metrics"]["enabled"]):
        return
    peers = values["metrics"]["allowedFrom"] or [{"podSelector": {}}]
    for _, workload, template in chart.pod_templates(docs):
        rules = [rule for policy in chart.by_kind(docs, "NetworkPolicy").values()
                 if chart.selects(policy["spec"]["podSelector"]["matchLabels"], template["metadata"]["labels"])
                 for rule in policy["spec"]["ingress"]
                 if any(p["port"] == "metrics" for p in rule.get("ports", []))]
        chart.expect(len(rules) == 1, f"{workload}: {len(rules)} NetworkPolicy rules name the metrics port")
        chart.expect(rules[0]["ports"] == [{"port": "metrics", "protocol": "TCP"}] and rules[0]["from"] == peers,
                     f"{workload}: metrics rule {rules[0]}, expected from {peers} to the metrics port only")
        chart.expect(not chart.allowed(docs, None, template, "metrics"), f"{workload}: metrics open to outside")
        stranger = chart.allowed(docs, {"app": "prometheus"}, template, "metrics")
        chart.expect(stranger == (not values["metrics"]["allowedFrom"]),
                     f"{workload}: metrics {'open' if stranger else 'closed'} to the namespace's other pods")


def check_expr(expr, exported, where, required):
    """Every series `expr` reads is an exported metric, with its labels, and carries the
    `required` matchers ({label: (op, value-check)})."""
    try:
        found, grouping = metric_names.selectors(expr)
    except ValueError as err:
        raise chart.CheckFailed(f"{where}: {err}") from err
    chart.expect(found, f"{where}: no metric in {expr!r}")
    known = set(metric_names.TARGET_LABELS)
    for name, matchers in found:
        chart.expect(name in exported, f"{where}: {name} is not a metric zaqar exports "
                                       f"(the table of docs/operations.md, \"## Metrics\")")
        known |= exported[name]
        for label in matchers:
            chart.expect(label in exported[name] | metric_names.TARGET_LABELS,
                         f"{where}: {name} has no label {label}")
        for label, (op, check) in required.items():
            got = matchers.get(label)
            chart.expect(got and got[0] == op and check(got[1]), f"{where}: {name} lacks the matcher {label}{op}...")
    for label in grouping:
        chart.expect(label in known, f"{where}: groups by {label}, a label of none of its metrics")


# The labels each alert's expression gives on the unhealthy series of RULE_TEST_SERIES, and
# those series: (selector, role (None: another namespace), unhealthy values, healthy values),
# a sample every 30 s. The ci values' thresholds must lie between the two.
ALERT_FIRES = {
    "ZaqarPoolNotReporting": '{pool="pool1"}', "ZaqarPoolStoreUnhealthy": '{pool="pool1"}',
    "ZaqarRaftNoLeader": "{}", "ZaqarHttp5xxRatio": "{}", "ZaqarNotifierGivingUp": '{kind="webhook"}',
    "ZaqarStoreSlow": '{backend="redis",operation="post_messages"}',
    "ZaqarNotifierLagging": '{kind="webhook"}',
}
RULE_TEST_SERIES = [
    ('zaqar_pool_report_age_seconds{pod="c-0",pool="pool1"}', "catalog", "0+30x40", "5x40"),
    ('zaqar_pool_report_age_seconds{pod="c-1",pool="pool1"}', "catalog", "0+30x40", "3x40"),
    ('zaqar_pool_report_age_seconds{pod="c-0",pool="pool2"}', "catalog", "5x40", "5x40"),
    ('zaqar_pool_report_age_seconds{pod="c-1",pool="pool2"}', "catalog", "0+30x40", "5x40"),  # c-1 cut off
    ('zaqar_pool_report_ok{pod="c-0",pool="pool1"}', "catalog", "0x40", "1x40"),
    ('zaqar_pool_report_ok{pod="c-1",pool="pool1"}', "catalog", "0x40", "1x40"),
    ('zaqar_pool_report_ok{pod="c-0",pool="pool2"}', "catalog", "1x40", "1x40"),
    ('zaqar_pool_report_ok{pod="c-1",pool="pool2"}', "catalog", "0x40", "1x40"),  # an older report
    ('zaqar_raft_is_leader{pod="c-0"}', "catalog", "0x40", "1x40"),
    ('zaqar_raft_is_leader{pod="c-1"}', "catalog", "0x40", "0x40"),
    ('zaqar_raft_is_leader{pod="c-0"}', None, "1x40", "1x40"),  # another namespace's leader
    ('zaqar_http_requests_total{route="/v2/queues",method="GET",status="200"}', "api-node", "0+90x40", "0+99x40"),
    ('zaqar_http_requests_total{route="/v2/queues",method="GET",status="503"}', "api-node", "0+10x40", "0+1x40"),
    ('zaqar_notifier_deliveries_total{kind="webhook",result="delivered"}', "pool-node", "0+5x40", "0+10x40"),
    ('zaqar_notifier_deliveries_total{kind="webhook",result="gave_up"}', "pool-node", "0+5x40", "0x40"),
] + [(f'zaqar_store_operation_duration_seconds_bucket{{backend="redis",operation="post_messages",le="{le}"}}',
      "pool-node", bad, "0+10x40") for le, bad in (("0.25", "0x40"), ("1", "0+10x40"), ("+Inf", "0+10x40"))
] + [(f'zaqar_notifier_delivery_lag_seconds_bucket{{kind="webhook",le="{le}"}}',
      "pool-node", bad, "0+10x40") for le, bad in (("60", "0x40"), ("600", "0+10x40"), ("+Inf", "0+10x40"))]


def promtool(args, tmp):
    """Runs promtool (True); without it fails under CI, else skips (False)."""
    tool = shutil.which("promtool")
    if tool is None:
        chart.expect(not os.environ.get("CI"),
                     "promtool is not installed (CI is set): the PrometheusRule is unchecked")
        print("    skipped promtool (not installed): the PrometheusRule's groups are unchecked")
        return False
    result = subprocess.run([tool, *args], cwd=tmp, capture_output=True, text=True, timeout=60)
    chart.expect(result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}")
    return True


def rule_tests(rules, jobs):
    """A promtool test file: on the unhealthy series each alert's expression gives the
    labels of ALERT_FIRES; on the healthy ones no alert fires."""
    def series(which):  # 0: unhealthy, 1: healthy
        rows = []
        for selector, role, *values in RULE_TEST_SERIES:
            target = f'namespace="{chart.NAMESPACE if role else "elsewhere"}",job="{jobs[role or "catalog"]}",'
            rows.append({"series": selector.replace("{", "{" + target, 1), "values": values[which]})
        return rows
    exprs = [{"expr": f"({rule['expr']}) * 0 + 1", "eval_time": "10m",
              "exp_samples": [{"labels": ALERT_FIRES[rule["alert"]], "value": 1}]} for rule in rules]
    quiet = [{"alertname": rule["alert"], "eval_time": "20m", "exp_alerts": []} for rule in rules]
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "30s", "tests": [
        {"name": "unhealthy", "interval": "30s", "input_series": series(0), "promql_expr_test": exprs},
        {"name": "healthy", "interval": "30s", "input_series": series(1), "alert_rule_test": quiet}]}


def check_prometheus_rule(docs, values, exported):
    """The PrometheusRule's structure, its expressions (check_expr) with the release's
    matchers, then promtool: check rules, and test rules (rule_tests). Says what it checked."""
    wanted = values["metrics"]["prometheusRule"]
    found = the_one(docs, "PrometheusRule", wanted["enabled"])
    if not found:
        return
    _, rule_doc = found
    chart.expect(rule_doc["apiVersion"] == CRD_API and set(rule_doc["spec"]) == {"groups"},
                 f"PrometheusRule structure: {rule_doc['apiVersion']}, spec {sorted(rule_doc['spec'])}")
    chart.expect(chart.selects(wanted["labels"], rule_doc["metadata"]["labels"]), "PrometheusRule labels")
    services = metrics_services(docs)
    jobs = {s["metadata"]["labels"]["app.kubernetes.io/component"]: n for n, s in sorted(services.items())}
    required = {}
    if not wanted["selector"]:  # the default: the namespace and the ServiceMonitor's job names
        def release_jobs(regex):
            return all(bool(re.fullmatch(regex, n)) == (n in services) for n in chart.by_kind(docs, "Service"))
        required = {"namespace": ("=", lambda v: v == chart.NAMESPACE), "job": ("=~", release_jobs)}
    rules = []
    for group in rule_doc["spec"]["groups"]:
        chart.expect(set(group) == {"name", "rules"} and group["rules"], f"rule group {group.get('name')}")
        for rule in group["rules"]:
            name = rule.get("alert")
            chart.expect(name and set(rule) == {"alert", "expr", "for", "labels", "annotations"}, f"rule {rule}")
            chart.expect(rule["labels"].get("severity") in ("critical", "warning", "info"), f"{name}: severity")
            chart.expect({"summary", "description"} <= set(rule["annotations"]), f"{name}: summary and description")
            check_expr(rule["expr"], exported, f"alert {name}", required)
            rules.append(rule)
    names = [rule["alert"] for rule in rules]
    chart.expect(sorted(names) == sorted(ALERT_FIRES), f"alerts {names}: each needs its case in ALERT_FIRES")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "rules.yaml").write_text(yaml.safe_dump({"groups": rule_doc["spec"]["groups"]}))
        checked = promtool(["check", "rules", "rules.yaml"], tmp)
        if checked and not wanted["selector"]:
            Path(tmp, "tests.yaml").write_text(yaml.safe_dump(rule_tests(rules, jobs)))
            promtool(["test", "rules", "tests.yaml"], tmp)
    return f"{len(rules)} alerts{' (promtool: checked, tested)' if checked else ''}"


def check_dashboard(docs, values, exported):
    """The dashboard ConfigMap has the sidecar's labels and JSON that parses, with panels whose
    expressions (and variables) read exported metrics filtered by $namespace and $job."""
    wanted = values["metrics"]["dashboard"]
    found = [cm for cm in chart.by_kind(docs, "ConfigMap").values() if "zaqar-rs.json" in cm.get("data", {})]
    if not wanted["enabled"]:
        chart.expect(not found, "dashboard ConfigMap rendered while disabled")
        return
    chart.expect(len(found) == 1, f"one dashboard ConfigMap expected, got {len(found)}")
    chart.expect(chart.selects(wanted["labels"], found[0]["metadata"]["labels"]),
                 "the dashboard ConfigMap lacks metrics.dashboard.labels (Grafana's sidecar)")
    try:
        dashboard = json.loads(found[0]["data"]["zaqar-rs.json"])
    except json.JSONDecodeError as err:
        raise chart.CheckFailed(f"the dashboard JSON does not parse: {err}") from err
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    chart.expect({"datasource", "namespace", "job"} <= set(variables), f"dashboard variables {sorted(variables)}")
    for variable in variables.values():
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        parsed = metric_names.label_values_query(query) if variable["type"] == "query" else None
        chart.expect(variable["type"] != "query" or parsed, f"dashboard variable {variable['name']}: query {query!r}")
        if parsed:
            metric, _, label = parsed
            chart.expect(metric in exported and label in exported[metric] | metric_names.TARGET_LABELS,
                         f"dashboard variable {variable['name']}: {metric} has no label {label} (docs/operations.md)")
    panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
    chart.expect(panels, "the dashboard has no panels")
    ids = [p["id"] for p in panels]
    chart.expect(len(set(ids)) == len(ids), f"dashboard panel ids {ids} repeat")
    required = {"namespace": ("=", lambda v: v == "$namespace"), "job": ("=~", lambda v: v == "$job")}
    for panel in panels:
        chart.expect(panel.get("targets") and "gridPos" in panel, f"dashboard panel {panel.get('title')}")
        for target in panel["targets"]:
            check_expr(target["expr"], exported, f"dashboard panel {panel['title']!r}", required)
    return len(panels)


def check_monitoring(docs, values, exported):
    """Checks the metrics wiring, ServiceMonitor, PrometheusRule and dashboard; says what it saw."""
    check_metrics_ports(docs, values)
    check_service_monitor(docs, values)
    check_metrics_network(docs, values)
    alerts = check_prometheus_rule(docs, values, exported)
    panels = check_dashboard(docs, values, exported)
    metrics = values["metrics"]
    seen = [f"metrics :{metrics['port']}" if metrics["enabled"] else "no metrics"]
    seen += ["ServiceMonitor"] * metrics["serviceMonitor"]["enabled"] + [alerts] * bool(alerts)
    seen += [f"dashboard of {panels} panels"] * bool(panels)
    return ", ".join(seen)
