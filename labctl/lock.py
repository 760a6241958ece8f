"""One bench, one run: a lock on every instrument connection a rig opens.

Each instrument a station reaches on its own VISA resource gets a lock file
(``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows), taken before
the resource is opened and released when the rig closes. The operating
system drops the lock of a process that dies, so a crashed or killed run
holds nothing. Beside each lock a holder file says who holds it: pid, host,
station, the time it was taken and, once the run's row exists, the run id;
a refused run names that holder.

Simulated instruments are locked per bench file; real ones per resource
name, whatever VISA library reaches them. Locks live in ``$LABCTL_LOCK_DIR``
or ``<temp>/labctl-locks``; two computers sharing one instrument are not
seen by each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import filelock

log = logging.getLogger("labctl.run")

LOCK_DIR_ENV = "LABCTL_LOCK_DIR"
"""Environment variable naming the folder of the lock files."""


class InstrumentBusy(RuntimeError):
    """An instrument that another run holds, in one line naming that run."""


@dataclass
class Holder:
    """Who holds a lock."""

    pid: int
    host: str
    station: str
    since: str
    run_id: int | None = None

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id is not None else "a run being opened"
        return (
            f"{run} of station {self.station} (pid {self.pid} on {self.host}, "
            f"since {self.since})"
        )


def lock_dir() -> Path:
    """The folder of the lock files (made if missing)."""
    folder = Path(
        os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "labctl-locks"
    )
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)  # every user of the computer shares the instruments
    return folder


def lock_key(resource: str, library: str) -> str:
    """What names one instrument connection: the bench file and resource for a
    simulated one, the resource alone for a real one."""
    from labctl.station import canonical_resource

    bench, sep, backend = library.rpartition("@")
    place = f"{Path(bench).resolve()}@{backend}|" if sep and backend == "labsim" else ""
    return place + canonical_resource(resource)


class ResourceLock:
    """The lock of one instrument connection."""

    def __init__(self, key: str, label: str) -> None:
        self.key = key
        self.label = label
        slug = re.sub(r"[^A-Za-z0-9]+", "-", key.rpartition("|")[2]).strip("-")[:40]
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        folder = lock_dir()
        self.path = folder / f"{slug}-{digest}.lock"
        self.holder_path = folder / f"{slug}-{digest}.holder.json"
        self._lock = filelock.FileLock(str(self.path), timeout=0)
        self._holder: Holder | None = None

    def acquire(self, holder: Holder) -> None:
        """Take the lock, or raise :class:`InstrumentBusy` naming its holder."""
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise InstrumentBusy(
                f"{self.label} is in use by {self._other()}; "
                "wait for that run to end or stop it"
            ) from None
        self._holder = holder
        self._write(holder)

    def note_run(self, run_id: int) -> None:
        """Record the run id of the run holding the lock."""
        if self._holder is not None:
            self._holder.run_id = run_id
            self._write(self._holder)

    def release(self) -> None:
        if self._holder is None:
            return
        self._holder = None
        with contextlib.suppress(OSError):
            self.holder_path.unlink()
        self._lock.release()

    def _write(self, holder: Holder) -> None:
        spare = self.holder_path.with_suffix(f".{os.getpid()}.tmp")
        spare.write_text(json.dumps(asdict(holder)), encoding="utf-8")
        os.replace(spare, self.holder_path)

    def _other(self) -> str:
        try:
            holder = Holder(**json.loads(self.holder_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return "another run (its holder file is missing)"
        return holder.describe()


class StationLock:
    """The locks of every connection of a station, taken all or none."""

    def __init__(
        self, station_name: str, connections: dict[str, tuple[str, str]]
    ) -> None:
        #: label -> lock, in a fixed order so that two rigs never wait in a circle
        self.locks = [
            ResourceLock(lock_key(resource, library), f"{name} ({resource})")
            for name, (resource, library) in sorted(connections.items())
        ]
        self.station_name = station_name

    def acquire(self) -> None:
        holder = Holder(
            os.getpid(),
            socket.gethostname(),
            self.station_name,
            time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        taken: list[ResourceLock] = []
        try:
            for lock in self.locks:
                lock.acquire(holder)
                taken.append(lock)
        except BaseException:
            for lock in taken:
                lock.release()
            raise
        log.debug("locked %s", ", ".join(lock.label for lock in self.locks))

    def note_run(self, run_id: int) -> None:
        for lock in self.locks:
            lock.note_run(run_id)

    def release(self) -> None:
        for lock in self.locks:
            with contextlib.suppress(Exception):
                lock.release()
