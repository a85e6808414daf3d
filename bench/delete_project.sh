#!/usr/bin/env bash
# What deleting a project costs the ingest of another project (BENCHMARKS.md,
# session 14), when one of its issues has very many counters: fills the
# project bench/load with FILL 5 KB events of one issue (default 20,000),
# then gives that issue COUNTERS more tag values (default 1,000,000) and a
# tenth as many users, written straight into the database, as an issue seen
# with that many distinct URLs and users over months would have them (sending
# a million events would take the fill minutes). Then for each mode in MODES
# (default "quiet delete") it copies the database fresh, starts `picket
# serve`, sends 20,000 events at 1,000/s to another project and reports their
# acceptance latency; in mode `delete`, bench/load is deleted with
# `DELETE /api/0/projects/bench/load/` 3 s in, and the time until its last
# issue row is gone is reported.
#
#   bench/delete_project.sh
#   COUNTERS=200000 MODES="quiet delete quiet delete" bench/delete_project.sh
set -euo pipefail
NAME=delete-project LOG_LEVEL=${LOG_LEVEL:-info}
source "$(dirname "$0")/serve_lib.sh"
other=$("$BIN" project create bench/other 2>/dev/null | tail -1)

start
"$LOAD" --dsn "$dsn" --token "$token" --events "${FILL:-20000}" --size-kb 5 --issues 1 --concurrency 32 --json >"$W/fill.json"
stop
python3 - "$W/data/picket.sqlite3" "${COUNTERS:-1000000}" <<'PY'
import sqlite3, sys
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
(issue,) = c.execute("SELECT issue_id FROM events GROUP BY issue_id ORDER BY COUNT(*) DESC LIMIT 1").fetchone()
c.executemany("INSERT INTO issue_tag_values (issue_id, key, value, times_seen, first_seen, last_seen) VALUES (?, 'url', ?, 1, 0, 0)",
              ((issue, f"https://shop.example.com/orders/{i}") for i in range(n)))
c.executemany("INSERT OR IGNORE INTO issue_users (issue_id, user_key) VALUES (?, ?)", ((issue, f"id:bench-{i}") for i in range(n // 10)))
c.commit()
print(f"issue {issue}: {c.execute('SELECT COUNT(*) FROM issue_tag_values WHERE issue_id = ?', (issue,)).fetchone()[0]} tag values, "
      f"{c.execute('SELECT COUNT(*) FROM issue_users WHERE issue_id = ?', (issue,)).fetchone()[0]} users")
PY
cp "$W/data/picket.sqlite3" "$W/filled.sqlite3"
pid_of_load=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT id FROM projects WHERE slug = 'load'\").fetchone()[0])" "$W/filled.sqlite3")
left() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM issues WHERE project_id = ? AND status <> 'deleted'\", (int(sys.argv[2]),)).fetchone()[0])" "$W/data/picket.sqlite3" "$pid_of_load"; }

latency_runs "$other" bench/other "/api/0/projects/bench/load/" left
