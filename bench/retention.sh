#!/usr/bin/env bash
# What deleting old data costs ingest (BENCHMARKS.md, session 12): fills a
# database with FILL 5 KB events (default 200,000, 100 issues), ages them
# 100 days, then for each mode in MODES (default "quiet cleanup") copies the
# aged database fresh, starts `picket serve`, sends 20,000 events at
# 1,000/s and reports their acceptance latency; in mode `cleanup`, a
# `picket cleanup` (retention_days 90) runs beside it and reports its time.
# Mode `fresh` does the same on an empty database, for scale.
#
#   bench/retention.sh
#   FILL=50000 MODES="fresh quiet cleanup quiet cleanup" bench/retention.sh
set -euo pipefail
NAME=retention LOG_LEVEL=warn
source "$(dirname "$0")/serve_lib.sh"
mkdir -p "$W/empty" && cp "$W"/data/picket.sqlite3* "$W/empty/"

start
"$LOAD" --dsn "$dsn" --token "$token" --events "${FILL:-200000}" --size-kb 5 --issues 100 --concurrency 32 --json >"$W/fill.json"
stop
python3 - "$W/data/picket.sqlite3" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE events SET received = received - 100*86400, timestamp = timestamp - 100*86400")
c.execute("UPDATE issues SET last_seen = last_seen - 100*86400, first_seen = first_seen - 100*86400")
c.commit()
print("aged", c.execute("SELECT COUNT(*) FROM events").fetchone()[0], "events by 100 days")
PY
cp "$W/data/picket.sqlite3" "$W/aged.sqlite3"

echo "| run | p50 ms | p99 ms | p999 ms | max ms | cleanup |"
echo "|---|---|---|---|---|---|"
for mode in ${MODES:-quiet cleanup}; do
  rm -f "$W"/data/picket.sqlite3*
  if [ "$mode" = fresh ]; then cp "$W"/empty/* "$W/data/"; else cp "$W/aged.sqlite3" "$W/data/picket.sqlite3"; fi
  start
  cleaner=
  if [ "$mode" = cleanup ]; then
    (sleep 3; /usr/bin/time -f "%e s wall, %U s user, %S s system" "$BIN" cleanup >"$W/cleanup.out" 2>"$W/cleanup.err") &
    cleaner=$!
  fi
  # The old events' count drops while they are deleted: do not wait to see these processed.
  "$LOAD" --dsn "$dsn" --token "$token" --events 20000 --size-kb 5 --issues 100 --concurrency 16 --rate 1000 --drain-timeout 5 --json >"$W/$mode.json" || true
  note=""
  if [ -n "$cleaner" ]; then wait "$cleaner"; note="$(tail -1 "$W/cleanup.out"); $(tail -1 "$W/cleanup.err")"; fi
  stop
  python3 - "$W/$mode.json" "$mode" "$note" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
print(f'| {sys.argv[2]} | {l["p50"]:.1f} | {l["p99"]:.1f} | {l["p999"]:.1f} | {l["max"]:.1f} | {sys.argv[3]} |')
PY
done
