"""``s3://`` channels through fsspec/s3fs: an existence check for the server, downloads for workers.

Credentials and region come from the standard AWS sources (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, instance
roles); ``endpoint_url`` points at an S3-compatible server (MinIO, moto, Ceph). A worker copies a
channel into its job's cache before training, so the readers only ever see local files, and a
resumed attempt reuses a completed copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tfic.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable

SCHEME = "s3://"
_MARKER = ".tfic-download.json"


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None


def is_s3(uri: str) -> bool:
    return uri.startswith(SCHEME)


def _key_path(uri: str) -> str:
    path = uri[len(SCHEME) :]
    bucket = path.split("/", 1)[0]
    if not bucket or path.startswith("/"):
        raise InvalidArgument(f"{uri!r} is not an S3 URI; expected s3://bucket/key", uri=uri)
    return path.rstrip("/")


def filesystem(options: S3Options) -> Any:
    import s3fs

    kwargs: dict[str, Any] = {"skip_instance_cache": True, "use_listings_cache": False}
    if options.endpoint_url:
        kwargs["endpoint_url"] = options.endpoint_url
    return s3fs.S3FileSystem(**kwargs)


def _calling(uri: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PermissionError:
        raise PermissionDenied(f"S3 denied access to {uri}", uri=uri) from None
    except FileNotFoundError:
        raise NotFound(f"{uri} does not exist", uri=uri) from None
    except OSError as exc:
        raise Unavailable(f"cannot read {uri} from S3: {exc}", uri=uri) from None


def check_exists(uri: str, options: S3Options, what: str = "channel") -> None:
    """:class:`NotFound` unless ``uri`` is an object or a prefix holding objects."""
    path = _key_path(uri)
    fs = filesystem(options)
    if not _calling(uri, lambda: fs.exists(path)):
        raise NotFound(f"{what} {uri!r} does not exist", uri=uri)


def download(uri: str, dest: Path, options: S3Options) -> Path:
    """Copy an object (with its .idx / labels.json / classes.txt siblings) or every object under a prefix
    to ``dest``; returns the local path standing for ``uri``. A completed copy is reused."""
    marker = dest / _MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("uri") == uri:
            return dest / str(info["local"])
    path = _key_path(uri)
    fs = filesystem(options)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if _calling(uri, lambda: fs.isdir(path)):
        local = "."
        prefix = path.rstrip("/") + "/"
        remote_files = [f for f in _calling(uri, lambda: fs.find(prefix)) if not f.endswith("/")]
        if not remote_files:
            raise NotFound(f"{uri!r} holds no objects", uri=uri)
        targets = [_local_target(partial, f[len(prefix) :], uri) for f in remote_files]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        _calling(uri, lambda: fs.get(remote_files, [str(t) for t in targets]))
    else:
        name = PurePosixPath(path).name
        local = name
        _calling(uri, lambda: fs.get_file(path, str(partial / name)))
        parent = str(PurePosixPath(path).parent)
        for sibling in (str(PurePosixPath(name).with_suffix(".idx")), "labels.json", "classes.txt"):
            remote = f"{parent}/{sibling}"
            if sibling != name and _calling(uri, lambda r=remote: fs.exists(r)):  # type: ignore[misc]
                _calling(uri, lambda r=remote, s=sibling: fs.get_file(r, str(partial / s)))  # type: ignore[misc]
    (partial / _MARKER).write_text(json.dumps({"uri": uri, "local": local}))
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(partial, dest)
    return dest / local


def _local_target(root: Path, relative: str, uri: str) -> Path:
    parts = PurePosixPath(relative).parts
    if not parts or ".." in parts or relative.startswith("/"):
        raise PermissionDenied(f"{uri} holds the key {relative!r}, which would be written outside the job's cache")
    return root.joinpath(*parts)
