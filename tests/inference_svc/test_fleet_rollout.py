"""A fleet rollout with version labels: two real inference processes sharing one model repository.

A closed-loop client classifies against both servers the whole time while ``tfic models`` promotes version 2
to canary (it answers the configured share), then to stable (every answer is version 2), then rolls back
(every answer is version 1 again); not one request fails.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.inference_svc.support import MODEL, encode, publish_copy, random_image, run_entry_point
from tfic import version_labels
from tfic.v1 import classifier_pb2, classifier_pb2_grpc, common_pb2
from tfic_cli.main import main as tfic

CANARY_SHARE = 0.25


class ClosedLoop:
    """One thread per server, each sending the next Classify as soon as the previous one answered."""

    def __init__(self, stubs: list[classifier_pb2_grpc.ClassifierStub], image: bytes) -> None:
        self._stubs = stubs
        self._request = classifier_pb2.ClassifyRequest(model=common_pb2.ModelSpec(name=MODEL), images=[image])
        self._lock = threading.Lock()
        self.versions: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in stubs]

    def _run(self, stub: classifier_pb2_grpc.ClassifierStub) -> None:
        while not self._stop.is_set():
            try:
                response = stub.Classify(self._request, timeout=30)
            except grpc.RpcError as exc:
                with self._lock:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            with self._lock:
                self.versions.append(response.model_version)

    def mark(self) -> int:
        with self._lock:
            return len(self.versions)

    def since(self, mark: int, count: int, timeout: float = 60) -> list[int]:
        """The next ``count`` answers after ``mark`` (waits for them)."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while self.mark() < mark + count:
            assert time.monotonic() < deadline, f"only {self.mark() - mark} answers in {timeout} s"
            pause.wait(0.01)
        with self._lock:
            return self.versions[mark : mark + count]

    def __enter__(self) -> ClosedLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def versions_of(stub: classifier_pb2_grpc.ClassifierStub) -> dict[int, tuple[str, tuple[str, ...]]]:
    info = stub.GetModel(classifier_pb2.GetModelRequest(name=MODEL), timeout=10)
    return {v.version: (classifier_pb2.VersionState.Name(v.state), tuple(v.version_labels)) for v in info.versions}


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pause.wait(0.05)


@contextlib.contextmanager
def two_servers(base: Path) -> Iterator[list[classifier_pb2_grpc.ClassifierStub]]:
    flags = ("--poll-interval-seconds", "0.1", "--log-level", "warning", "--warmup-iterations", "1")
    with run_entry_point(base, *flags) as a, run_entry_point(base, *flags) as b:
        channels = [grpc.insecure_channel(f"127.0.0.1:{p.port}") for p in (a, b)]
        try:
            yield [classifier_pb2_grpc.ClassifierStub(c) for c in channels]
        finally:
            for c in channels:
                c.close()


def test_promote_canary_stable_and_roll_back_across_two_servers(
    tmp_path: Path, model_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "models"
    model_dir = base / MODEL
    publish_copy(model_store / MODEL / "1", model_dir, 1)
    assert tfic(["models", "promote", str(model_dir), "1"]) == 0  # validated and labelled before any pod runs
    publish_copy(model_store / MODEL / "1", model_dir, 2)  # a new version lands: the fleet keeps serving stable

    with two_servers(base) as stubs:
        wait_for(
            "version 1 on both servers",
            lambda: all(versions_of(s) == {1: ("VERSION_STATE_AVAILABLE", ("stable",))} for s in stubs),
        )
        with ClosedLoop(stubs, encode(random_image(7))) as loop:
            assert set(loop.since(loop.mark(), 40)) == {1}, "version 2 is on disk but unlabelled: not served"

            assert (
                tfic(
                    ["models", "promote", str(model_dir), "2", "--label", "canary", "--canary-share", str(CANARY_SHARE)]
                )
                == 0
            )
            both = {1: ("VERSION_STATE_AVAILABLE", ("stable",)), 2: ("VERSION_STATE_AVAILABLE", ("canary",))}
            wait_for("the canary on both servers", lambda: all(versions_of(s) == both for s in stubs))
            answers = loop.since(loop.mark(), 400)
            share = answers.count(2) / len(answers)
            # Each server counts its share exactly; two interleaved closed loops make the total close to it.
            assert abs(share - CANARY_SHARE) < 0.05, f"canary answered {share:.3f} of {len(answers)}"
            assert set(answers) == {1, 2}

            assert tfic(["models", "promote", str(model_dir), "2"]) == 0
            wait_for(
                "only version 2",
                lambda: all(versions_of(s) == {2: ("VERSION_STATE_AVAILABLE", ("stable",))} for s in stubs),
            )
            assert set(loop.since(loop.mark(), 100)) == {2}

            assert tfic(["models", "rollback", str(model_dir)]) == 0
            wait_for(
                "only version 1 again",
                lambda: all(versions_of(s) == {1: ("VERSION_STATE_AVAILABLE", ("stable",))} for s in stubs),
            )
            assert set(loop.since(loop.mark(), 100)) == {1}
            total = loop.mark()
        assert loop.failures == [], loop.failures[:5]
        assert total >= 640

    labels = version_labels.read(model_dir)
    assert labels is not None and dict(labels.labels) == {"stable": 1}
    moves = [(m.label, m.previous, m.version, m.by) for m in labels.history]
    assert moves == [
        ("stable", None, 1, "promote"),
        ("canary", None, 2, "promote"),
        ("stable", 1, 2, "promote"),
        ("canary", 2, None, "promote"),
        ("stable", 2, 1, "rollback"),
    ]
    assert set(labels.validated) == {1, 2} and "loads" in labels.validated[2]["checks"]
    printed = capsys.readouterr().out
    assert "validated: predicts 8 random images (twice, identical)" in printed
    assert json.loads((model_dir / version_labels.FILE_NAME).read_text())["format"] == version_labels.FORMAT
