#!/usr/bin/env python3
"""Which tables and indexes a running Picket's commits write to the WAL.

    bench/wal_frames.py DATA_DIR [SNAPSHOTS [INTERVAL_S]]

Run it while a load is going (e.g. `picket-load` against `picket serve`):
it copies the WAL file SNAPSHOTS times (default 12), INTERVAL_S apart
(default 0.7), reads each copy's valid frames (those with the WAL header's
salts), maps each frame's page number to its table or index through
SQLite's `dbstat` (the `sqlite3` command-line tool, read-only), and prints
frames per owner. Frames of consecutive snapshots may repeat: read the
shares, not the totals. Pages not in `dbstat` are free-list pages.
"""

import collections
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def frames(wal: bytes):
    """(page size, [(page number, commit flag)]) of the valid frames."""
    if len(wal) < 32:
        return 0, []
    _magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:32])
    out, offset = [], 32
    while offset + 24 + page_size <= len(wal):
        page, db_size, s1, s2 = struct.unpack(">4I", wal[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        out.append((page, db_size != 0))
        offset += 24 + page_size
    return page_size, out


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    data = Path(sys.argv[1])
    snapshots = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.7
    db, wal = data / "picket.sqlite3", data / "picket.sqlite3-wal"
    seen, page_size = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(snapshots):
            copy = Path(tmp) / f"wal.{i}"
            shutil.copy(wal, copy)
            size, fr = frames(copy.read_bytes())
            page_size = size or page_size
            seen.extend(fr)
            time.sleep(interval)
    listing = subprocess.run(
        ["sqlite3", f"file:{db}?mode=ro", "SELECT pageno, name FROM dbstat"],
        capture_output=True, text=True, check=True,
    ).stdout
    owner = {}
    for line in listing.splitlines():
        page, name = line.split("|", 1)
        owner[int(page)] = name
    commits = sum(1 for _, commit in seen if commit)
    by_owner = collections.Counter(owner.get(page, "(free list)") for page, _ in seen)
    print(f"page size {page_size}, {len(seen)} frames, {commits} commits, "
          f"{len(seen) / max(commits, 1):.1f} frames per commit")
    for name, n in by_owner.most_common(15):
        print(f"{name:40} {n:7} {100 * n / max(len(seen), 1):5.1f}%")


if __name__ == "__main__":
    main()
