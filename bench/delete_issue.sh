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

start
"$LOAD" --dsn "$dsn" --token "$token" --events "${FILL:-200000}" --size-kb 5 --issues 1 --concurrency 32 --json >"$W/fill.json"
stop
cp "$W/data/picket.sqlite3" "$W/filled.sqlite3"
big=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT issue_id FROM events GROUP BY issue_id ORDER BY COUNT(*) DESC LIMIT 1').fetchone()[0])" "$W/filled.sqlite3")
count() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM events WHERE issue_id = ?', (int(sys.argv[2]),)).fetchone()[0])" "$W/data/picket.sqlite3" "$big"; }
echo "issue $big holds $(count) events"

latency_runs "$dsn" bench/load "/api/0/issues/$big/" count
