#!/usr/bin/env bash
# What deleting one large issue through the API costs ingest (BENCHMARKS.md,
# session 13): fills a database with FILL 5 KB events of one issue (default
# 200,000), then for each mode in MODES (default "quiet delete") copies it
# fresh, starts `picket serve`, sends 20,000 events at 1,000/s of other
# issues and reports their acceptance latency; in mode `delete`, the large
# issue is deleted with `DELETE /api/0/issues/ID/` 3 s in, and the time until
# its last event is gone is reported.
#
#   bench/delete_issue.sh
#   FILL=50000 MODES="quiet delete quiet delete" bench/delete_issue.sh
set -euo pipefail
NAME=delete-issue LOG_LEVEL=info
source "$(dirname "$0")/serve_lib.sh"
api() { curl -sf -H "Authorization: Bearer $token" "$@"; }

start
"$LOAD" --dsn "$dsn" --token "$token" --events "${FILL:-200000}" --size-kb 5 --issues 1 --concurrency 32 --json >"$W/fill.json"
stop
cp "$W/data/picket.sqlite3" "$W/filled.sqlite3"
big=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT issue_id FROM events GROUP BY issue_id ORDER BY COUNT(*) DESC LIMIT 1').fetchone()[0])" "$W/filled.sqlite3")
count() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM events WHERE issue_id = ?', (int(sys.argv[2]),)).fetchone()[0])" "$W/data/picket.sqlite3" "$big"; }
echo "issue $big holds $(count) events"

echo "| run | p50 ms | p99 ms | p999 ms | max ms | deletion |"
echo "|---|---|---|---|---|---|"
for mode in ${MODES:-quiet delete}; do
  rm -f "$W"/data/picket.sqlite3*
  cp "$W/filled.sqlite3" "$W/data/picket.sqlite3"
  start
  deleter=
  if [ "$mode" = delete ]; then
    (sleep 3; t0=$(date +%s.%N); api -X DELETE -o /dev/null "http://127.0.0.1:$port/api/0/issues/$big/"
     t1=$(date +%s.%N)
     while [ "$(count)" != 0 ]; do sleep 0.2; done
     t2=$(date +%s.%N)
     python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); print(f'answered in {1000*(b-a):.0f} ms, events gone after {c-a:.1f} s')" "$t0" "$t1" "$t2" >"$W/delete.out") &
    deleter=$!
  fi
  # Other issues than the large one; the event count drops while it is deleted: do not wait to see these processed.
  "$LOAD" --dsn "$dsn" --token "$token" --events 20000 --size-kb 5 --issues 100 --concurrency 16 --rate 1000 --drain-timeout 5 --json >"$W/$mode.json" || true
  note=""
  if [ -n "$deleter" ]; then wait "$deleter"; note="$(cat "$W/delete.out")"; fi
  stop
  python3 - "$W/$mode.json" "$mode" "$note" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
print(f'| {sys.argv[2]} | {l["p50"]:.1f} | {l["p99"]:.1f} | {l["p999"]:.1f} | {l["max"]:.1f} | {sys.argv[3]} |')
PY
done
