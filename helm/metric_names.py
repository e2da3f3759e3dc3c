"""The metrics zaqar exports and the series a PromQL expression reads, for the checks of the
chart's alerts and dashboard in helm/check_chart.py.

The exported metrics are the table of docs/operations.md ("## Metrics"), which a unit test
keeps equal to the names the code registers (ops/src/metrics.rs). The expression scanner is
no full PromQL parser: it finds each series selector (metric name and label matchers) and the
labels of by/without/on/ignoring clauses, which is what the checks need. Grafana variables
($job, $__rate_interval) may stand in strings and ranges.
"""

import re

# Labels Prometheus adds to every scraped series (prometheus-operator's service discovery).
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container", "endpoint"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
MATCH_OPS = {"=", "!=", "=~", "!~"}
TOKEN = re.compile(r'''\s+|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|\[[^\]]*\]|\$\{?\w+\}?'''
                   r'''|[A-Za-z_:][\w:]*|\d[\w.+-]*|\.\d+|=~|!~|!=|==|>=|<=|.''')


def exported_metrics(operations_md):
    """{series name: its labels} of the metric table: a histogram NAME gives NAME_bucket
    (with `le`), NAME_sum and NAME_count; counters are listed by their _total name."""
    metrics = {}
    for line in operations_md.splitlines():
        if not line.startswith("| `zaqar_"):  # the rows the unit test compares with the code
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names, kind = re.findall(r"`(zaqar_\w+)`", cells[0]), cells[1]
        labels = set(re.findall(r"`(\w+)`", cells[2]))
        for name in names:
            if kind == "histogram":
                metrics[f"{name}_bucket"] = labels | {"le"}
                metrics[f"{name}_sum"] = metrics[f"{name}_count"] = labels
            else:
                metrics[name] = labels
    return metrics


def selectors(expr):
    """([(metric, {label: (op, value)})], {grouping labels}) of a PromQL expression;
    ValueError for what it cannot read (a selector without a metric name, a bad matcher)."""
    tokens = [token for token in TOKEN.findall(expr) if not token.isspace()]
    found, grouping, i = [], set(), 0
    while i < len(tokens):
        token, after = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in GROUPING and after == "(":
            end = tokens.index(")", i)
            grouping |= {t for t in tokens[i + 2:end] if t != ","}
            i = end + 1
        elif token == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        elif re.fullmatch(r"[A-Za-z_:][\w:]*", token) and token not in KEYWORDS \
                and after not in ("(", "by", "without"):  # not a function or an aggregation
            matchers, i = {}, i + 1
            if after == "{":
                end = tokens.index("}", i)
                body = [t for t in tokens[i + 1:end] if t != ","]
                for k in range(0, len(body), 3):
                    label, op, value = (body[k:k + 3] + ["", ""])[:3]
                    if op not in MATCH_OPS or value[:1] not in ("\"", "'", "`"):
                        raise ValueError(f"cannot read the matchers of {token} in {expr!r}")
                    matchers[label] = (op, value[1:-1])
                i = end + 1
            found.append((token, matchers))
        else:
            i += 1
    return found, grouping


def label_values_query(query):
    """(metric, matchers, label) of a Grafana variable query `label_values(METRIC{...}, LABEL)`,
    or None for another query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
    if not match:
        return None
    found, _ = selectors(match.group(1))
    if len(found) != 1:
        raise ValueError(f"label_values of {len(found)} metrics in {query!r}")
    return found[0][0], found[0][1], match.group(2)
