"""The worker process: one attempt of one training job (``python -m trainer_svc.service.worker``).

Started by the runner in a session of its own. How it talks to the server:

* Events: each training event is appended to the job store by this process (durable even if the
  server is gone at that moment), then its sequence number is written as one line to the pipe the
  process started with as stdout — the server's doorbell to read the store. Everything else this
  process prints goes to stderr, which the server appends to the job's ``worker.log``.
* Stop: SIGTERM asks for a cooperative stop at the next batch (checkpoints are kept); the server
  follows up with SIGKILL to the process group after a grace period.
* It dies with the server (``PR_SET_PDEATHSIG`` on Linux, a watchdog thread elsewhere), so a
  restarted server never has to share a job with an orphan.
* Exit status: 0 a version was published; 2 the job cannot run as asked (an ``error`` event says
  why); 3 stopped; 1 an internal error (an ``error`` event, the traceback in the log).

Before TensorFlow is imported, the data is checked against the data roots again (a path may have
changed since the job was accepted) and ``s3://`` channels are copied to the job's cache.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from tfic import logs
from tfic.errors import INTERNAL, Cancelled, FailedPrecondition, TficError, status_for
from trainer_svc.service import s3
from trainer_svc.service.datapaths import DataRoots
from trainer_svc.service.jobs import ERROR, PROMOTED, TENSORBOARD_DIR, Channel, Job
from trainer_svc.service.store import NewEvent, SqliteJobStore
from trainer_svc.service.validation import check_manifest_images, is_model_path

log = logging.getLogger("trainer_svc.worker")

EXIT_OK, EXIT_INTERNAL, EXIT_JOB_ERROR, EXIT_STOPPED = 0, 1, 2, 3
_PR_SET_PDEATHSIG = 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer_svc.service.worker", description=__doc__)
    p.add_argument("--database", type=Path, required=True)
    p.add_argument("--job-id", required=True)
    p.add_argument("--attempt", type=int, required=True)
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--model-base-path", type=Path, required=True)
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--data-root", action="append", default=[])
    p.add_argument("--s3-endpoint-url")
    p.add_argument("--resume", action="store_true")
    return p


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:  # pragma: no cover - Linux is what tfic deploys on

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(EXIT_INTERNAL)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent_pid:  # the server died before the line above took effect
        os._exit(EXIT_INTERNAL)


def _take_stdout() -> IO[str]:
    """The doorbell pipe; from here on, anything written to stdout (by TF, say) goes to stderr."""
    doorbell = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return doorbell


class _Events:
    def __init__(self, store: SqliteJobStore, job_id: str, attempt: int, doorbell: IO[str]) -> None:
        self.store, self.job_id, self.attempt, self.doorbell = store, job_id, attempt, doorbell
        self.types: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        self.types.add(str(event["type"]))
        data = {k: v for k, v in event.items() if k != "type"}
        appended = self.store.append_event(self.job_id, NewEvent(str(event["type"]), data), self.attempt)
        with contextlib.suppress(BrokenPipeError, ValueError):  # the server is gone; the event is stored anyway
            self.doorbell.write(f"{appended.seq}\n")


def _local_channel(channel: Channel, roots: DataRoots, cache: Path, s3_options: s3.S3Options) -> Channel:
    """The channel with its data as local paths: checked against the roots, or copied from S3."""
    what = f"{channel.name} channel"
    names = channel.attribute_names
    if s3.is_s3(channel.uri):
        uri = s3.localize(channel.uri, cache / channel.name, s3_options, channel.format, names)
        root = (
            s3.download(channel.image_root, cache / channel.name / "image-root", s3_options)
            if channel.image_root
            else None
        )
        return Channel(channel.name, str(uri), channel.format, str(root) if root else None, names)
    real = roots.resolve(channel.uri, what)
    if s3.is_manifest(str(real), channel.format) and real.is_file():
        # A local manifest may name images anywhere: each must lie under the roots (or in S3: fetched).
        check_manifest_images(real, channel, roots)  # again: the files may have changed since it was accepted
        local = s3.localize_manifest(real, cache / channel.name / "images", s3_options, names)
        return Channel(channel.name, str(local), channel.format, None, names)
    if real.is_dir():
        roots.check_tree(real, what)
    image_root = None
    if channel.image_root:
        image_root = roots.resolve(channel.image_root, f"{what} image_root")
        roots.check_tree(image_root, f"{what} image_root")
    return Channel(channel.name, str(real), channel.format, str(image_root) if image_root else None, names)


def _train(job: Job, args: argparse.Namespace, stop: threading.Event, sink: _Events) -> None:
    from trainer_svc.training import hyperparameters

    roots = DataRoots(args.data_root)
    options = s3.S3Options(args.s3_endpoint_url)
    hp = hyperparameters.parse(job.spec.hyperparameters)
    channels = {c.name: _local_channel(c, roots, args.cache_dir, options) for c in job.spec.channels}
    base_model = job.spec.base_model
    if base_model and is_model_path(base_model):
        base_model = str(DataRoots([*roots.roots, args.model_base_path]).resolve(base_model, "base_model"))
    if stop.is_set():
        raise Cancelled("stopped before training started")

    from trainer_svc.training.train import Channel as TrainChannel
    from trainer_svc.training.train import TrainRequest, run

    local = {name: TrainChannel(c.uri, c.format, c.image_root, c.attribute_names) for name, c in channels.items()}
    result = run(
        TrainRequest(
            train=local["train"],
            validation=local.get("validation"),
            model_base_path=args.model_base_path,
            model_name=job.spec.model_name,
            hyperparameters=hp,
            base_model=base_model,
            work_dir=args.work_dir,
            # Beside the work directory (removed when the job ends), so it stays with the job.
            tensorboard_dir=args.work_dir.parent / TENSORBOARD_DIR,
            resume=args.resume,
            should_stop=stop.is_set,
        ),
        sink,
    )
    if job.spec.promote and result.version is not None and not result.stopped:
        _promote(job, args.model_base_path / job.spec.model_name, result.version, sink)


def _promote(job: Job, model_dir: Path, version: int, sink: _Events) -> None:
    from trainer_svc.training.promotion import promote_version

    try:
        promotion = promote_version(model_dir, version, job.spec.promote, by=f"trainer job {job.job_id}")
    except TficError as exc:
        # The version stays published (a person may still promote it); the job says why no label moved.
        raise FailedPrecondition(
            f"version {version} was published but not promoted to {job.spec.promote}: {exc.message}"
        ) from None
    log.info("job %s: %s -> %s version %d", job.job_id, job.spec.promote, job.spec.model_name, version)
    sink({"type": PROMOTED, "label": promotion.label, "version": version, "checks": list(promotion.checks)})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    doorbell = _take_stdout()
    _die_with_parent(args.parent_pid)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure("info", "text")
    store = SqliteJobStore(args.database)
    sink = _Events(store, args.job_id, args.attempt, doorbell)
    log.info("job %s attempt %d: worker %d started", args.job_id, args.attempt, os.getpid())
    try:
        _train(store.get(args.job_id), args, stop, sink)
        return EXIT_OK
    except Cancelled:
        if "stopped" not in sink.types:  # train.run reports its own stop; an earlier one is ours to report
            sink({"type": "stopped"})
        return EXIT_STOPPED
    except TficError as exc:
        if status_for(exc) is INTERNAL:
            return _internal(sink, exc)
        log.error("job %s failed: %s", args.job_id, exc.message)
        sink({"type": ERROR, "reason": exc.reason, "message": exc.message})
        return EXIT_JOB_ERROR
    except Exception as exc:
        return _internal(sink, exc)
    finally:
        store.close()


def _internal(sink: _Events, exc: BaseException) -> int:
    log.exception("internal error in the training worker", exc_info=exc)
    message = f"internal error in the training worker ({type(exc).__name__}); see the job's worker.log"
    sink({"type": ERROR, "reason": "internal", "message": message})
    return EXIT_INTERNAL


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is in the store; skip TensorFlow's slow interpreter teardown.
    os._exit(code)
