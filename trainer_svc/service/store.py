"""The job store: every job and its event log, durable across restarts.

:class:`JobStore` is the contract; :class:`SqliteJobStore` is the embedded default (one SQLite file
in the state directory, WAL mode). Rules every implementation keeps:

* Each method is one atomic transaction and may be called from any thread. Several processes may
  use one store at once: the server changes jobs, and each worker appends its job's events.
* A job's events are numbered 1, 2, 3… in the order they were appended; a number is never reused.
  :meth:`update` can append an event in the same transaction as the change it reports, so a reader
  that sees a job in a state also sees the event announcing it.
* :meth:`create` is idempotent on ``request_id``: a second call returns the first job unchanged.
  Names and request ids are unique (:class:`AlreadyExists` for a name taken by another request).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfic.errors import AlreadyExists, FailedPrecondition, NotFound
from trainer_svc.service.jobs import (
    ACTIVE_STATES,
    STATE,
    EpochMetrics,
    Job,
    JobEvent,
    JobSpec,
    JobState,
    ModelOutput,
)

SCHEMA_VERSION = 1
DATABASE_FILE = "trainer.db"


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]


def state_event(state: JobState, failure_reason: str = "") -> NewEvent:
    data: dict[str, Any] = {"state": state.value}
    if failure_reason:
        data["failure_reason"] = failure_reason
    return NewEvent(STATE, data)


class JobStore(ABC):
    @abstractmethod
    def create(self, job: Job) -> tuple[Job, bool]:
        """Insert ``job`` (with a ``state`` event); returns (the job, True), or (the earlier job, False)
        when ``job.request_id`` was seen before."""

    @abstractmethod
    def get(self, ref: str) -> Job:
        """A job by id, else by name; :class:`NotFound` if neither."""

    @abstractmethod
    def find_request(self, request_id: str) -> Job | None: ...

    @abstractmethod
    def list_jobs(self, states: Sequence[JobState], limit: int, before: int | None) -> tuple[list[Job], int | None]:
        """Newest first. ``before`` is the cursor a previous page returned; the second value is the next
        page's cursor, or None on the last page."""

    @abstractmethod
    def active(self) -> list[Job]:
        """Jobs that are Pending, InProgress or Stopping, oldest first (queue order)."""

    @abstractmethod
    def update(self, job_id: str, event: NewEvent | None = None, attempt: int | None = None, **changes: Any) -> Job:
        """Change columns of a job (state, attempt, start_time, end_time, failure_reason, last_metrics,
        output, worker_pid) and optionally append ``event`` (tagged with the job's attempt)."""

    @abstractmethod
    def append_event(self, job_id: str, event: NewEvent, attempt: int) -> JobEvent: ...

    @abstractmethod
    def events(self, job_id: str, after: int = 0) -> list[JobEvent]:
        """Events with ``seq > after``, in order."""

    @abstractmethod
    def count_by_state(self) -> dict[JobState, int]: ...

    @abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE jobs (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    request_id TEXT UNIQUE,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    create_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    failure_reason TEXT NOT NULL DEFAULT '',
    last_metrics TEXT,
    output TEXT,
    worker_pid INTEGER
);
CREATE INDEX jobs_by_state ON jobs (state, ord);
CREATE TABLE events (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    attempt INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "ord, job_id, name, request_id, state, spec, attempt, create_time, start_time, end_time, failure_reason, "
    "last_metrics, output, worker_pid"
)
_UPDATABLE = {"state", "start_time", "end_time", "failure_reason", "last_metrics", "output", "worker_pid"}


def _encode(name: str, value: Any) -> Any:
    if name == "state":
        return JobState(value).value
    if name in ("last_metrics", "output"):
        return None if value is None else json.dumps(value.to_dict(), sort_keys=True)
    return value


def _job(row: sqlite3.Row) -> Job:
    return Job(
        job_id=row["job_id"],
        name=row["name"],
        state=JobState(row["state"]),
        spec=JobSpec.from_json(row["spec"]),
        create_time=row["create_time"],
        request_id=row["request_id"],
        attempt=row["attempt"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        failure_reason=row["failure_reason"],
        last_metrics=EpochMetrics.from_event(json.loads(row["last_metrics"])) if row["last_metrics"] else None,
        output=ModelOutput.from_event(json.loads(row["output"])) if row["output"] else None,
        worker_pid=row["worker_pid"],
    )


class SqliteJobStore(JobStore):
    """One SQLite database (WAL mode, so readers never wait for the writer) shared by server and workers.

    Writers take the write lock up front (``BEGIN IMMEDIATE``) and wait up to ``busy_timeout`` seconds
    for another process's transaction; all transactions here are a few rows, so waits are short.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise FailedPrecondition(
                f"{self.path}: cannot use SQLite WAL mode (got {mode}); is it on a network filesystem?"
            )
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise FailedPrecondition(
                        f"{self.path} has schema version {version}, newer than this tfic's {SCHEMA_VERSION}; "
                        "upgrade tfic or use another --state-dir"
                    )
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _write(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
                self._db.execute("COMMIT")
                return result
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)))

    def _get_row(self, ref: str) -> sqlite3.Row | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (ref,)).fetchone()
        if row is None:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE name = ?", (ref,)).fetchone()
        return row  # type: ignore[no-any-return]

    def _append(self, job_id: str, event: NewEvent, attempt: int) -> JobEvent:
        now = time.time()
        row = self._db.execute(
            "INSERT INTO events (job_id, seq, time, attempt, type, data) "
            "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?), ?, ?, ?, ?) RETURNING seq",
            (job_id, job_id, now, attempt, event.type, json.dumps(event.data, sort_keys=True)),
        ).fetchone()
        return JobEvent(job_id, row[0], now, attempt, event.type, event.data)

    def create(self, job: Job) -> tuple[Job, bool]:
        def insert() -> tuple[Job, bool]:
            if job.request_id:
                earlier = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE request_id = ?", (job.request_id,)
                ).fetchone()
                if earlier is not None:
                    return _job(earlier), False
            if self._db.execute("SELECT 1 FROM jobs WHERE name = ?", (job.name,)).fetchone():
                raise AlreadyExists(f"a training job named {job.name!r} already exists", name=job.name)
            self._db.execute(
                "INSERT INTO jobs (job_id, name, request_id, state, spec, attempt, create_time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job.job_id,
                    job.name,
                    job.request_id or None,
                    job.state.value,
                    job.spec.to_json(),
                    job.attempt,
                    job.create_time,
                ),
            )
            self._append(job.job_id, state_event(job.state), job.attempt)
            return job, True

        result: tuple[Job, bool] = self._write(insert)
        return result

    def get(self, ref: str) -> Job:
        with self._lock:
            row = self._get_row(ref)
        if row is None:
            raise NotFound(f"no training job with id or name {ref!r}", job=ref)
        return _job(row)

    def find_request(self, request_id: str) -> Job | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE request_id = ?", (request_id,))
        return _job(rows[0]) if rows else None

    def list_jobs(self, states: Sequence[JobState], limit: int, before: int | None) -> tuple[list[Job], int | None]:
        where: list[str] = []
        params: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(s.value for s in states)
        if before is not None:
            where.append("ord < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs {clause} ORDER BY ord DESC LIMIT ?", [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return [_job(r) for r in rows], (rows[-1]["ord"] if more else None)

    def active(self) -> list[Job]:
        marks = ", ".join("?" for _ in ACTIVE_STATES)
        rows = self._read(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY ord", [s.value for s in ACTIVE_STATES]
        )
        return [_job(r) for r in rows]

    def update(self, job_id: str, event: NewEvent | None = None, attempt: int | None = None, **changes: Any) -> Job:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        columns = dict(changes)
        if attempt is not None:
            columns["attempt"] = attempt

        def apply() -> Job:
            if columns:
                assignments = ", ".join(f"{name} = ?" for name in columns)
                values = [_encode(name, value) for name, value in columns.items()]
                cursor = self._db.execute(f"UPDATE jobs SET {assignments} WHERE job_id = ?", (*values, job_id))
                if cursor.rowcount == 0:
                    raise NotFound(f"no training job with id {job_id!r}", job=job_id)
            row = self._get_row(job_id)
            if row is None:
                raise NotFound(f"no training job with id {job_id!r}", job=job_id)
            if event is not None:
                self._append(job_id, event, row["attempt"])
            return _job(row)

        job: Job = self._write(apply)
        return job

    def append_event(self, job_id: str, event: NewEvent, attempt: int) -> JobEvent:
        appended: JobEvent = self._write(self._append, job_id, event, attempt)
        return appended

    def events(self, job_id: str, after: int = 0) -> list[JobEvent]:
        rows = self._read(
            "SELECT job_id, seq, time, attempt, type, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq",
            (job_id, after),
        )
        return [
            JobEvent(r["job_id"], r["seq"], r["time"], r["attempt"], r["type"], json.loads(r["data"])) for r in rows
        ]

    def count_by_state(self) -> dict[JobState, int]:
        rows = self._read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {JobState(r["state"]): int(r["n"]) for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
