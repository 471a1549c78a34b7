"""The SQLite job store: WAL mode, schema version, per-job event numbering, idempotent create."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tfic.errors import AlreadyExists, FailedPrecondition, NotFound
from trainer_svc.service.jobs import Channel, Job, JobSpec, JobState
from trainer_svc.service.store import SCHEMA_VERSION, NewEvent, SqliteJobStore, state_event

SPEC = JobSpec((Channel("train", "digits"),), {"epochs": 2}, "digits")


def _job(name: str, request_id: str | None = None) -> Job:
    return Job(f"tj_{name}", name, JobState.PENDING, SPEC, time.time(), request_id=request_id)


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    SqliteJobStore(tmp_path / "t.db").close()
    db = sqlite3.connect(tmp_path / "t.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(FailedPrecondition, match="newer than this tfic"):
        SqliteJobStore(tmp_path / "t.db")


def test_create_is_idempotent_on_request_id_and_names_are_unique(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "t.db")
    first, created = store.create(_job("a", request_id="r1"))
    assert created
    again, created = store.create(_job("a2", request_id="r1"))
    assert (again.job_id, created) == (first.job_id, False)
    with pytest.raises(AlreadyExists):
        store.create(_job("a"))
    assert store.get("a") == store.get("tj_a")
    with pytest.raises(NotFound):
        store.get("b")
    store.close()


def test_events_are_numbered_per_job_across_writers(tmp_path: Path) -> None:
    """The server and a worker append to one job's log at once: numbers stay 1..n, no gaps or repeats."""
    path = tmp_path / "t.db"
    server = SqliteJobStore(path)
    server.create(_job("a"))
    worker = SqliteJobStore(path)

    def append(store: SqliteJobStore, kind: str) -> None:
        for i in range(50):
            store.append_event("tj_a", NewEvent(kind, {"i": i}), attempt=1)

    threads = [threading.Thread(target=append, args=(s, k)) for s, k in ((server, "message"), (worker, "epoch"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    job = server.update("tj_a", event=state_event(JobState.IN_PROGRESS), state=JobState.IN_PROGRESS)
    events = worker.events("tj_a")
    assert [e.seq for e in events] == list(range(1, 102 + 1))
    assert events[0].state == JobState.PENDING and events[-1].state == JobState.IN_PROGRESS
    assert job.state == JobState.IN_PROGRESS
    assert [e.seq for e in worker.events("tj_a", after=100)] == [101, 102]
    server.close()
    worker.close()
