#!/usr/bin/env bash
# Runs the fault suite (tests/tests/faults_*.rs: real processes under a steady load
# with a ledger, one fault at a time) and writes its table into docs/reliability.md,
# between the "fault table" markers. Needs what scripts/test.sh installs (redis-server,
# and SecantusDB for the MongoDB row).
set -euo pipefail
cd "$(dirname "$0")/.."
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
cargo build -q --locked -p zaqar-ops --features zaqar-pool-node/mongodb --bin zaqar
export ZAQAR_BIN=$PWD/target/debug/zaqar
secantusd=${ZAQAR_SECANTUS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/zaqar-rs/secantus}/bin/secantusd-rs
export ZAQAR_TEST_SECANTUSD=${ZAQAR_TEST_SECANTUSD:-$secantusd}
ZAQAR_FAULTS_REPORT="$report" cargo test -q --locked -p zaqar-tests \
    --test faults_standalone --test faults_cluster --test faults_catalog_network -- --test-threads 1
python3 - "$report" docs/reliability.md <<'PY'
"""Puts the rows of the report between the table markers of the document."""
import datetime, sys

rows = sorted(open(sys.argv[1]).read().split("\n"))
rows = [row for row in rows if row.startswith("|")]
path = sys.argv[2]
text = open(path).read()
begin, end = "<!-- fault table: begin -->", "<!-- fault table: end -->"
head, rest = text.split(begin)
_, tail = rest.split(end)
table = "\n".join([
    f"Run of {datetime.date.today().isoformat()} (`scripts/faults-report.sh`):",
    "",
    "| fault | acknowledged messages lost | messages held by two live claims | seconds until posts were acknowledged again | requests failed |",
    "|---|---|---|---|---|",
    *rows,
])
open(path, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
print(table)
PY
