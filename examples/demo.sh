#!/usr/bin/env bash
# `make demo`: a throwaway SQLite ledger, the schedules of examples/demo.toml, the daemon for
# about 15 s of real time, then status, history, explain and verify. It finishes on its own.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CRONLEDGER=${CRONLEDGER:-$HERE/../.venv/bin/cronledger}
SECONDS_TO_RUN=${DEMO_SECONDS:-15}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cronledger-demo.XXXXXX")
export CRONLEDGER_LEDGER="sqlite:///$WORK/demo.db"

step() {
    printf '\n\033[1m$ cronledger %s\033[0m\n' "$*"
    "$CRONLEDGER" "$@"
}

echo "ledger: $CRONLEDGER_LEDGER"
step apply "$HERE/demo.toml"
printf '\n\033[1m$ cronledger run --for %ss\033[0m   (one JSON line per tick that decided something)\n' "$SECONDS_TO_RUN"
"$CRONLEDGER" run --for "${SECONDS_TO_RUN}s" 2>&1 | cut -c1-160 | tail -n 8
step status
step history --limit 15
# 2.5 s after overlap-forbid's first fire: its second fire (at +2 s) met the first run (5 s long)
skip_at=$("$CRONLEDGER" --json history overlap-forbid | "${PYTHON:-python3}" -c '
import datetime as d, json, sys
first = json.load(sys.stdin)["runs"][0]["scheduled_for_ms"] + 2500
print(d.datetime.fromtimestamp(first / 1000, d.timezone.utc).isoformat(timespec="milliseconds"))')
step explain overlap-forbid --at "$skip_at"
step explain quiet
# the first failed attempt of the flaky job: why it ran and what was planned after it
run_id=$("$CRONLEDGER" --json history flaky --limit 1000 \
    | "${PYTHON:-python3}" -c 'import json,sys; print(*[r["run_id"] for r in json.load(sys.stdin)["runs"]][:1])')
if [ -n "$run_id" ]; then step explain "$run_id"; fi
# a finished run's output: its files are gone, the tails its outcome fact recorded remain
tick_run=$("$CRONLEDGER" --json history tick --limit 1000 | "${PYTHON:-python3}" -c '
import json, sys
print(*[r["run_id"] for r in json.load(sys.stdin)["runs"] if r["outcome"] == "succeeded"][:1])')
if [ -n "$tick_run" ]; then step logs "$tick_run"; fi
step verify
echo
echo "The ledger stays at $WORK/demo.db: try \`CRONLEDGER_LEDGER=$CRONLEDGER_LEDGER cronledger replay --position 20\`."
