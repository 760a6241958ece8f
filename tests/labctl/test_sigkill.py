"""Nothing measured is lost: runs killed with SIGKILL at random points.

Each run is a ``labctl run … --stream`` process on a simulated bench of its
own. It prints a point only once the point is committed to the database and
written to the CSV; the test reads a random number of those lines, kills the
process with SIGKILL (it may be anywhere then: measuring, inside a commit,
writing the CSV), and checks that

* every point the process reported is in the database and in the CSV, as
  reported, and the CSV holds nothing the database does not;
* the next ``labctl`` start marks the run interrupted;
* the database passes its integrity checks;

then continues the run with ``labctl runs resume`` (which may be killed in
turn) until it finishes, and checks that the finished run holds every point
of the procedure exactly once, in the database and the CSV.

The three procedures' runs go on side by side, writing to one database.
The default suite kills 6 runs on SQLite and 3 on PostgreSQL; ``-m slow``
kills 51 on each. ``LABCTL_KILL_SEED`` picks other kill points.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from labctl import runner, storage
from labctl.cli import app
from labctl.station import load_station
from tests.conftest import write_bench

SEED = int(os.environ.get("LABCTL_KILL_SEED", "20251"))
PROCEDURES = {
    "iv_sweep": ["--step", "0.05"],
    "read_map": [],
    "program_map": ["--targets", "random"],
}


@dataclass
class Chain:
    """One run, killed and resumed until it finishes."""

    procedure: str
    db: str
    station: Path
    folder: Path
    rng: random.Random
    run_id: int | None = None
    kills: int = 0
    kills_of_run: int = 0
    checked_points: int = 0  # reported by killed processes, found stored
    finished_points: int = 0  # of finished runs, each found once
    log: list[str] = field(default_factory=list)

    def segment(self, spawn, kill: bool) -> int:
        """Start or resume the run; kill it after a random number of reported
        points if asked. Returns the process's exit code."""
        if self.run_id is None:
            args = ["run", self.procedure, *PROCEDURES[self.procedure]]
        else:
            args = ["runs", "resume", str(self.run_id)]
        stderr = open(self.folder / f"{self.procedure}.stderr", "a")  # noqa: SIM115
        child = spawn(*args, "--station", str(self.station), "--db", self.db,
                      "--stream", cwd=self.folder, stdout=subprocess.PIPE,
                      stderr=stderr, text=True)
        stored = len(points_of(self.db, self.run_id)) if self.run_id else 0
        left = expected_points(self.procedure, self.station) - stored
        wait_for = self.rng.randrange(0, max(left, 1)) if kill else None
        lines = []
        for line in child.stdout:
            lines.append(json.loads(line))
            if wait_for is not None and len(lines) > wait_for:  # "started", then points
                child.send_signal(signal.SIGKILL)
                break
        lines += [json.loads(line) for line in child.stdout]
        code = child.wait()
        stderr.close()
        started = [e for e in lines if e["event"] == "started"]
        if started:
            self.run_id = started[0]["run"]
        reported = {e["seq"]: e["data"] for e in lines if e["event"] == "point"}
        self.log.append(f"{' '.join(args[:2])}: exit {code}, waited for {wait_for}, "
                        f"{len(reported)} points reported")
        if self.run_id is not None:
            self.check_stored(reported)
        return code

    def check_stored(self, reported: dict[int, dict]) -> None:
        database = dict(enumerate(points_of(self.db, self.run_id)))
        for seq, data in reported.items():
            assert database.get(seq) == data, self.why(f"point {seq} not stored")
        csv_rows = csv_points(self.csv_path())
        assert len(csv_rows) >= len(reported), self.why("points not in the CSV")
        for seq, row in enumerate(csv_rows):
            assert same(row, database.get(seq)), self.why(f"CSV line {seq} not stored")
        self.checked_points += len(reported)
        assert_intact(self.db)

    def csv_path(self) -> Path:
        return Path(storage.get_run(engine_of(self.db), self.run_id).csv_path)

    def why(self, problem: str) -> str:
        return (f"{problem}: {self.procedure} run {self.run_id} on {self.db}, "
                f"kill seed {SEED}; " + "; ".join(self.log))


def run_chain(chain: Chain, spawn, kills: int) -> None:
    """Kill the chain's run ``kills`` times, resuming it after each kill, then
    let it finish and check the whole run. A kill that lands after the run
    finished does not count; the run is checked and a new one started."""
    while True:
        code = chain.segment(spawn, kill=chain.kills < kills)
        assert code in (0, -signal.SIGKILL), chain.why("the run failed")
        status = status_on_next_start(chain.db, chain.run_id)
        if status != "finished":
            assert (code, status) == (-signal.SIGKILL, "interrupted"), chain.why(status)
            chain.kills += 1
            chain.kills_of_run += 1
            continue
        check_complete(chain)
        if chain.kills >= kills:
            return
        chain.run_id = None
        chain.kills_of_run = 0


def check_complete(chain: Chain) -> None:
    engine = engine_of(chain.db)
    run = storage.get_run(engine, chain.run_id)
    assert run.status == "finished", chain.why(run.message or run.status)
    assert run.resumes == chain.kills_of_run
    points = points_of(chain.db, chain.run_id)
    assert len(points) == expected_points(chain.procedure, chain.station)
    if chain.procedure == "iv_sweep":
        levels = runner.build_procedure(
            "iv_sweep", {"step": "0.05"}, load_station(chain.station)).levels()
        assert [p["Voltage (V)"] for p in points] == [float(v) for v in levels]
    else:
        cells = [(p["Row"], p["Column"]) for p in points]
        assert sorted(cells) == [(r, c) for r in range(64) for c in range(8)]
    rows = csv_points(Path(run.csv_path))
    assert len(rows) == len(points)
    assert all(same(row, point) for row, point in zip(rows, points, strict=True))
    chain.finished_points += len(points)


def expected_points(procedure: str, station: Path) -> int:
    if procedure == "iv_sweep":
        return len(runner.build_procedure("iv_sweep", {"step": "0.05"},
                                          load_station(station)).levels())
    return 64 * 8


_ENGINES: dict[str, object] = {}


def engine_of(url: str):
    if url not in _ENGINES:
        _ENGINES[url] = storage.connect(url)
    return _ENGINES[url]


def points_of(url: str, run_id: int) -> list[dict]:
    return storage.run_points(engine_of(url), run_id)


_CLI = threading.Lock()  # the CLI runner takes over sys.stdout while it runs


def status_on_next_start(url: str, run_id: int) -> str:
    with _CLI:
        shown = CliRunner().invoke(app, ["runs", "show", str(run_id), "--db", url])
    assert shown.exit_code == 0, shown.output
    return storage.get_run(engine_of(url), run_id).status


def csv_points(path: Path) -> list[dict[str, str]]:
    """The data lines of a pymeasure CSV, by column."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


def same(row: dict[str, str], point: dict | None) -> bool:
    """A CSV line holds exactly a stored point's values."""
    if point is None or row.keys() != point.keys():
        return False
    for column, value in point.items():
        number = float(row[column])
        if value is None:
            if not math.isnan(number):
                return False
        elif number != value:
            return False
    return True


def assert_intact(url: str) -> None:
    """The database's own integrity checks, and each run's points numbered
    0..n-1 once each."""
    engine = engine_of(url)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        else:
            postgres_checks(conn)
        point = storage.Point
        seqs: dict[int, list[int]] = {}
        for run_id, seq in conn.execute(select(point.run_id, point.seq)
                                        .order_by(point.run_id, point.seq)):
            seqs.setdefault(run_id, []).append(seq)
    for run_id, numbers in seqs.items():
        assert numbers == list(range(len(numbers))), f"run {run_id}: points {numbers}"


def postgres_checks(conn) -> None:
    """amcheck on every table and index of the schema, where the user may use it."""
    try:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS amcheck")
        conn.commit()
    except Exception:  # not allowed to: the remaining checks still run
        conn.rollback()
        return
    tables = conn.execute(text(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r'")).scalars().all()
    for table in tables:
        damage = conn.execute(text("SELECT * FROM verify_heapam(:t)"),
                              {"t": table}).all()
        assert damage == [], damage
    indexes = conn.execute(text(
        "SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND a.amname = 'btree'")).scalars().all()
    for index in indexes:
        conn.execute(text("SELECT bt_index_check(:i, true)"), {"i": index})
    conn.commit()


def kill_runs(db: str, tmp_path: Path, spawn, kills_each: int) -> list[Chain]:
    """Each procedure's chain of kills, the three at once."""
    engine_of(db)  # the schema is made before the processes start
    chains = [Chain(procedure, db, write_bench(tmp_path / procedure), tmp_path,
                    random.Random(f"{SEED}-{procedure}-{db.split(':')[0]}"))
              for procedure in PROCEDURES]  # a bench each: one run at a time on one
    with ThreadPoolExecutor(len(chains)) as pool:
        for done in [pool.submit(run_chain, c, spawn, kills_each) for c in chains]:
            done.result()
    return chains


def test_killed_runs_lose_nothing_they_reported_and_resume(any_db, tmp_path, spawn):
    kills_each = 2 if any_db.startswith("sqlite") else 1
    chains = kill_runs(any_db, tmp_path, spawn, kills_each)
    assert [c.kills for c in chains] == [kills_each] * 3
    assert all(c.checked_points > 0 for c in chains)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fifty_one_kills_lose_nothing(any_db, tmp_path, spawn, capsys):
    chains = kill_runs(any_db, tmp_path, spawn, 17)
    kills = sum(c.kills for c in chains)
    checked = sum(c.checked_points for c in chains)
    finished = sum(c.finished_points for c in chains)
    with capsys.disabled():
        print(f"\n{any_db.split(':')[0]}: {kills} kills; {checked} points reported "
              f"before a kill found in the database and the CSV; {finished} points "
              "of the resumed runs found once each")
    assert kills >= 51
