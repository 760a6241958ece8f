"""SQLite in WAL mode: a reader never blocks the run that writes."""

import json
import sqlite3
import subprocess

from labctl import storage
from tests.conftest import write_bench


def test_a_second_connection_reads_while_a_run_writes(tmp_path, spawn):
    station = write_bench(tmp_path / "bench")
    database = tmp_path / "runs.sqlite"
    storage.connect(storage.as_url(str(database)))
    child = spawn("run", "read_map", "--station", str(station), "--db", str(database),
                  "--stream", cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    events = (json.loads(line) for line in child.stdout)
    assert next(events)["event"] == "started"
    first = next(events)

    reader = sqlite3.connect(database)  # its own connection, outside labctl
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    held = reader.execute("SELECT count(*) FROM points").fetchone()[0]
    assert held > first["seq"]
    # While the reader holds its snapshot, the run goes on committing points:
    # with a rollback journal its commits would wait on the reader, then fail.
    last = first["seq"]
    for event in events:
        last = event.get("seq", last)
        if last >= held + 100:
            break
    assert last >= held + 100
    assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == held
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM points").fetchone()[0] > last

    for _ in events:
        pass
    assert child.wait() == 0
    assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == 64 * 8
    assert reader.execute("SELECT status FROM runs").fetchall() == [("finished",)]
