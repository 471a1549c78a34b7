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
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from tfic.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable

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


CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE, "
    "in the environment of the process that reads S3, or give it an instance role"
)


def _calling(uri: str, fn: Callable[[], Any]) -> Any:
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    try:
        return fn()
    except (NoCredentialsError, PartialCredentialsError) as exc:
        # Not the caller's request being wrong, nor S3 failing: this process was started without credentials.
        raise FailedPrecondition(f"cannot read {uri}: no S3 credentials ({exc}); {CREDENTIALS_HELP}", uri=uri) from None
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


def is_manifest(uri: str, fmt: str | None) -> bool:
    return fmt in ("manifest", "augmented-manifest") or PurePosixPath(uri).suffix.lower() in (".manifest", ".jsonl")


def localize_manifest(
    manifest: Path,
    images: Path,
    options: S3Options,
    attribute_names: tuple[str, ...] | None = None,
    base_uri: str | None = None,
) -> Path:
    """Fetch every ``s3://`` image an augmented manifest names into ``images`` and write a manifest naming the
    copies (``images/../local.manifest``, local references made absolute); returns it, or ``manifest`` itself
    when it names no S3 object.

    ``base_uri``: the S3 folder a downloaded manifest came from, against which relative references resolve.
    """
    image_key = attribute_names[0] if attribute_names else "source-ref"
    records: list[Any] = []
    remote: dict[str, Path] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            records.append(line)  # the reader reports it, with its line number
            continue
        ref = record.get(image_key) if isinstance(record, dict) else None
        if isinstance(ref, str) and base_uri is not None and "://" not in ref and not ref.startswith("/"):
            ref = f"{base_uri.rstrip('/')}/{ref}"
        if isinstance(ref, str) and is_s3(ref):
            path = _key_path(ref)
            target = remote.setdefault(path, _local_target(images, path, ref))
            record[image_key] = str(target)
        elif isinstance(ref, str) and "://" not in ref and not os.path.isabs(ref):
            record[image_key] = str(manifest.parent / ref)
        records.append(record)
    if not remote:
        return manifest
    fs = filesystem(options)
    missing = [p for p, t in remote.items() if not t.is_file()]
    for target in {remote[p].parent for p in missing}:
        target.mkdir(parents=True, exist_ok=True)
    if missing:
        where = f"{SCHEME}{missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        _calling(where, lambda: fs.get(missing, [str(remote[p]) for p in missing]))
    local = images.parent / "local.manifest"
    local.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return local


def localize(
    uri: str,
    dest: Path,
    options: S3Options,
    fmt: str | None = None,
    attribute_names: tuple[str, ...] | None = None,
) -> Path:
    """An ``s3://`` channel as a local path under ``dest``: the data (and, for a manifest, its images)."""
    local = download(uri, dest / "data", options)
    if is_manifest(uri, fmt) and local.is_file():
        base = uri.rsplit("/", 1)[0]
        return localize_manifest(local, dest / "images", options, attribute_names, base_uri=base)
    return local


def fetch_model(uri: str, dest: Path, options: S3Options) -> Path:
    """An ``s3://BASE/NAME[/VERSION]`` model as a local version folder under ``dest``: the version named, or the
    latest of NAME (the largest integer prefix holding a saved_model.pb). Only that version is copied."""
    path = _key_path(uri)
    fs = filesystem(options)
    if not _calling(uri, lambda: fs.exists(f"{path}/saved_model.pb")):
        versions = []
        for entry in _calling(uri, lambda: fs.ls(path, detail=False)):
            name = PurePosixPath(entry).name
            marker = f"{path}/{name}/saved_model.pb"
            if name.isdigit() and int(name) > 0 and _calling(uri, partial(fs.exists, marker)):
                versions.append(int(name))
        if not versions:
            raise NotFound(f"no model version found at {uri} (expected {uri.rstrip('/')}/<version>/saved_model.pb)")
        uri = f"{SCHEME}{path}/{max(versions)}"
    version = PurePosixPath(_key_path(uri)).name
    return download(uri, dest / version, options)


def fetch(
    uri: str,
    image_root: str | None,
    fmt: str | None,
    attribute_names: tuple[str, ...] | None,
    dest: Path,
    options: S3Options,
) -> tuple[str, str | None]:
    """A channel's data and image root as local paths: ``s3://`` ones copied under ``dest`` (local ones as given,
    except a local manifest naming ``s3://`` images, whose images are copied). For ``tfic train``/``evaluate``."""
    if is_s3(uri):
        local = str(localize(uri, dest, options, fmt, attribute_names))
    elif is_manifest(uri, fmt) and Path(uri).is_file():
        local = str(localize_manifest(Path(uri), dest / "images", options, attribute_names))
    else:
        local = uri
    root = str(download(image_root, dest / "image-root", options)) if image_root and is_s3(image_root) else image_root
    return local, root
