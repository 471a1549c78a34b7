"""Keep a model repository in object storage and local copies of it in step, one whole version at a time.

The alternative to a ReadWriteMany volume (deploy/k8s/components/models-s3): the trainer's pod pushes every
version it publishes to ``s3://bucket/prefix``; each inference pod pulls them into its own folder. Runs in
the tfic images (fsspec and s3fs are tfic dependencies) as a sidecar::

    python model_sync.py push --local /models --remote s3://bucket/models [--interval 15] [--once]
    python model_sync.py pull --remote s3://bucket/models --local /models [--interval 15] [--once]
                                [--latest N] [--delete]

Versions stay atomic on both sides, as the model-directory contract (docs/model-directory.md) requires:

* push uploads ``<name>/<version>/`` and then writes the marker object ``<name>/<version>.complete``; a
  version without its marker is not published yet (or its upload was interrupted and is redone);
* pull downloads a marked version into ``<name>/.tmp-sync-<version>/`` and renames it into place, so the
  inference service's watcher never sees half a version. ``--latest N`` takes only each model's newest N
  versions (match the inference service's version policy); ``--delete`` removes local versions that are
  not wanted any more (retired upstream, or older than the newest N), renamed away before deletion.

* a model's fleet labels (``<name>/version_labels.json``, docs/inference.md) travel too, after the versions
  they name: push uploads the file once every labelled version is marked complete, pull replaces the local
  file atomically once every labelled version is in place, and ``--latest`` / ``--delete`` never drop a
  labelled version (a rollback needs the old stable).

Only integer version folders of valid model names (and their labels file) move; ``.work``, ``.tmp-*``
and anything else stay put.
``TFIC_S3_ENDPOINT_URL`` points at an S3-compatible server (MinIO, Ceph); credentials come from the
standard ``AWS_*`` variables or the pod's cloud identity.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("model_sync")

MARKER_SUFFIX = ".complete"
LABELS_FILE = "version_labels.json"
STAGING_PREFIX = ".tmp-sync-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION = re.compile(r"^[1-9][0-9]*$")


def filesystem(endpoint_url: str | None = None) -> Any:
    import s3fs

    kwargs: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return s3fs.S3FileSystem(**kwargs)


def _bucket_path(uri: str) -> str:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise SystemExit(f"model_sync: {uri!r} is not an s3://bucket/prefix URI")
    return uri[len("s3://") :].rstrip("/")


def local_versions(root: Path) -> dict[str, set[int]]:
    """``{model name: versions}`` of the local repository (integer folders of valid names only)."""
    found: dict[str, set[int]] = {}
    if not root.is_dir():
        return found
    for model in root.iterdir():
        if model.is_dir() and _NAME.match(model.name) and not model.name.startswith("."):
            versions = {int(v.name) for v in model.iterdir() if v.is_dir() and _VERSION.match(v.name)}
            if versions:
                found[model.name] = versions
    return found


def remote_versions(fs: Any, prefix: str) -> dict[str, set[int]]:
    """``{model name: versions}`` with a completion marker under ``prefix``."""
    found: dict[str, set[int]] = {}
    if not fs.exists(prefix):
        return found
    for entry in fs.ls(prefix, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if not _NAME.match(name) or fs.isfile(entry):
            continue
        for item in fs.ls(entry, detail=False):
            leaf = item.rsplit("/", 1)[-1]
            if leaf.endswith(MARKER_SUFFIX) and _VERSION.match(leaf[: -len(MARKER_SUFFIX)]):
                found.setdefault(name, set()).add(int(leaf[: -len(MARKER_SUFFIX)]))
    return found


def labelled_versions(data: bytes) -> set[int]:
    """The versions a labels file names (``{"labels": {"stable": 3, "canary": 4}, ...}``); none if unreadable."""
    try:
        labels = json.loads(data).get("labels") or {}
        return {int(v) for v in labels.values()}
    except (ValueError, TypeError, AttributeError):
        return set()


def _remote_labels(fs: Any, prefix: str, name: str) -> bytes | None:
    path = f"{prefix}/{name}/{LABELS_FILE}"
    return bytes(fs.cat_file(path)) if fs.exists(path) else None


def push(fs: Any, local: Path, prefix: str) -> list[str]:
    """Upload local versions the remote lacks; returns ``name/version`` for each one uploaded."""
    remote = remote_versions(fs, prefix)
    done = []
    for name, versions in sorted(local_versions(local).items()):
        for version in sorted(versions - remote.get(name, set())):
            source = local / name / str(version)
            target = f"{prefix}/{name}/{version}"
            files = sorted(p for p in source.rglob("*") if p.is_file())
            for path in files:
                fs.put_file(str(path), f"{target}/{path.relative_to(source).as_posix()}")
            fs.pipe_file(f"{target}{MARKER_SUFFIX}", json.dumps({"files": len(files)}).encode())
            log.info("pushed %s version %d (%d files)", name, version, len(files))
            done.append(f"{name}/{version}")
    marked = remote_versions(fs, prefix)
    for name in sorted(local_versions(local)):
        path = local / name / LABELS_FILE
        if not path.is_file():
            continue
        data = path.read_bytes()
        if not labelled_versions(data) <= marked.get(name, set()):
            continue  # a labelled version is not uploaded yet: the labels wait for it
        if _remote_labels(fs, prefix, name) != data:
            fs.pipe_file(f"{prefix}/{name}/{LABELS_FILE}", data)
            log.info("pushed %s labels", name)
            done.append(f"{name}/{LABELS_FILE}")
    return done


def pull(fs: Any, prefix: str, local: Path, *, latest: int = 0, delete: bool = False) -> list[str]:
    """Download marked versions the local repository lacks (each model's newest ``latest``; 0: all), each
    renamed into place whole; with ``delete``, remove local versions not wanted any more."""
    marked = remote_versions(fs, prefix)
    labels = {name: data for name in marked if (data := _remote_labels(fs, prefix, name)) is not None}
    remote = marked
    if latest > 0:  # the newest N, and whatever the labels name (a rollback needs the old stable)
        remote = {
            name: set(sorted(versions)[-latest:]) | (labelled_versions(labels.get(name, b"{}")) & versions)
            for name, versions in marked.items()
        }
    have = local_versions(local)
    done = []
    for name, versions in sorted(remote.items()):
        for version in sorted(versions - have.get(name, set())):
            folder = local / name
            folder.mkdir(parents=True, exist_ok=True)
            staging = folder / f"{STAGING_PREFIX}{version}"
            shutil.rmtree(staging, ignore_errors=True)
            source = f"{prefix}/{name}/{version}"
            for item in fs.find(source):
                target = staging / item[len(source) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(item, str(target))
            os.rename(staging, folder / str(version))
            log.info("pulled %s version %d", name, version)
            done.append(f"{name}/{version}")
    for name, data in sorted(labels.items()):
        path = local / name / LABELS_FILE
        if (path.read_bytes() if path.is_file() else None) == data:
            continue
        if not labelled_versions(data) <= set(local_versions(local).get(name, set())):
            continue  # the servers must find every labelled version before the labels name it
        staging = local / name / f"{STAGING_PREFIX}{LABELS_FILE}"
        staging.write_bytes(data)
        os.replace(staging, path)
        log.info("pulled %s labels", name)
        done.append(f"{name}/{LABELS_FILE}")
    if delete:
        for name, versions in have.items():
            path = local / name / LABELS_FILE
            in_effect = labelled_versions(path.read_bytes()) if path.is_file() else set()
            for version in sorted(versions - remote.get(name, set()) - in_effect):
                retired = local / name / f"{STAGING_PREFIX}{version}-retired"
                os.rename(local / name / str(version), retired)
                shutil.rmtree(retired, ignore_errors=True)
                log.info("removed %s version %d (no longer in %s)", name, version, prefix)
                done.append(f"-{name}/{version}")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("direction", choices=("push", "pull"))
    parser.add_argument("--local", type=Path, required=True, help="the local model repository")
    parser.add_argument("--remote", required=True, help="s3://bucket/prefix")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between passes")
    parser.add_argument("--once", action="store_true", help="one pass, then exit (status 1 if it failed)")
    parser.add_argument("--latest", type=int, default=0, help="pull: each model's newest N versions (0: all)")
    parser.add_argument("--delete", action="store_true", help="pull: remove local versions not wanted any more")
    parser.add_argument("--endpoint-url", default=os.environ.get("TFIC_S3_ENDPOINT_URL") or None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prefix = _bucket_path(args.remote)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while True:
        try:
            fs = filesystem(args.endpoint_url)
            if args.direction == "push":
                push(fs, args.local, prefix)
            else:
                pull(fs, prefix, args.local, latest=args.latest, delete=args.delete)
        except Exception:  # keep the sidecar alive: storage hiccups are retried on the next pass
            log.exception("%s pass failed", args.direction)
            if args.once:
                return 1
        if args.once or stop.wait(args.interval):
            return 0


if __name__ == "__main__":
    sys.exit(main())
