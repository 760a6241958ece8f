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

    # A snapshot taken as the run starts, held while the run stores all its
    # points: with a rollback journal the run's commits would wait on this
    # reader, then fail.
    reader = sqlite3.connect(database)  # its own connection, outside labctl
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    held = reader.execute("SELECT count(*) FROM points").fetchone()[0]
    seqs = [event["seq"] for event in events if "seq" in event]
    assert child.wait() == 0
    assert held < 64 * 8 and len(seqs) > 0
    assert max(seqs) == 64 * 8 - 1
    assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == held
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM points").fetchone()[0] == 64 * 8
    assert reader.execute("SELECT status FROM runs").fetchall() == [("finished",)]
