"""Which models to serve: a base-path scan or TensorFlow Serving's model config file.

The config file is TensorFlow Serving's text proto, so one file configures both servers::

    model_config_list {
      config {
        name: "digits"
        base_path: "/models/digits"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }   # or all {} / specific { versions: 3 }
        version_labels { key: "stable" value: 3 }
      }
    }

Relative ``base_path`` values are taken relative to the file's directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from inference_svc.settings import VersionPolicy
from tfic.errors import InvalidArgument
from tfic.modeldir import list_versions, validate_model_name


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path  # holds <version>/saved_model.pb
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: Mapping[str, int] = field(default_factory=dict)


def parse_model_config(text: str, relative_to: Path = Path()) -> list[ModelConfig]:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise InvalidArgument(f"model config is not a valid ModelServerConfig text proto: {exc}") from None
    if message.WhichOneof("config") != "model_config_list":
        raise InvalidArgument("model config must hold a model_config_list")
    configs: list[ModelConfig] = []
    seen: set[str] = set()
    for entry in message.model_config_list.config:
        name = validate_model_name(entry.name)
        if name in seen:
            raise InvalidArgument(f"model {name!r} is configured twice")
        seen.add(name)
        if entry.model_platform not in ("", "tensorflow"):
            raise InvalidArgument(f"model {name!r}: platform {entry.model_platform!r} is not supported (tensorflow)")
        if not entry.base_path:
            raise InvalidArgument(f"model {name!r} has no base_path")
        base = Path(entry.base_path)
        if not base.is_absolute():
            base = relative_to / base
        policy_pb = entry.model_version_policy
        which = policy_pb.WhichOneof("policy_choice")
        if which == "all":
            policy = VersionPolicy("all")
        elif which == "specific":
            versions = tuple(sorted(set(policy_pb.specific.versions)))
            if not versions:
                raise InvalidArgument(f"model {name!r}: a specific version policy needs versions")
            policy = VersionPolicy("specific", versions=versions)
        else:
            n = policy_pb.latest.num_versions if which == "latest" else 1
            policy = VersionPolicy("latest", num_versions=max(1, n))
        labels = {str(k): int(v) for k, v in entry.version_labels.items()}
        configs.append(ModelConfig(name, base, policy, labels))
    return configs


def read_model_config(path: Path) -> list[ModelConfig]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read model config {path}: {exc}") from None
    return parse_model_config(text, path.parent)


def scan_base_path(base: Path, policy: VersionPolicy, model_name: str = "") -> list[ModelConfig]:
    """Every model under ``base`` (``base/<name>/<version>``), or ``base`` itself if it holds versions.

    Names starting with a dot (staging and work directories) and names that are not valid model
    names are skipped.
    """
    if not base.is_dir():
        return []
    if list_versions(base):
        return [ModelConfig(validate_model_name(model_name or base.resolve().name), base, policy)]
    configs = []
    for entry in sorted(base.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            name = validate_model_name(entry.name)
        except InvalidArgument:
            continue
        configs.append(ModelConfig(name, entry, policy))
    return configs


Fingerprint = tuple[int, int, int]  # files, total bytes, newest mtime (ns) under a version's folder


def version_fingerprint(folder: Path) -> Fingerprint | None:
    """What changes when any file of a version is added, removed, rewritten or resized; None without a
    ``saved_model.pb`` (not published yet).

    Every file counts, not only ``saved_model.pb``: a non-atomic copy can land the graph before its variables,
    and the version must be retried when they arrive (their copied mtimes may be old, so count and size count).
    """
    try:
        (folder / "saved_model.pb").stat()
    except OSError:
        return None
    files = size = newest = 0
    for top, _dirs, names in os.walk(folder):
        for name in names:
            try:
                st = os.stat(os.path.join(top, name))
            except OSError:
                continue  # removed while we looked: the next scan sees the result
            files += 1
            size += st.st_size
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return files, size, newest


def version_fingerprints(base: Path) -> dict[int, Fingerprint]:
    """Published versions and a fingerprint of all the files of each (:func:`version_fingerprint`).

    A version that failed to load is retried when its fingerprint changes.
    """
    found: dict[int, Fingerprint] = {}
    for version in list_versions(base):
        fingerprint = version_fingerprint(base / str(version))
        if fingerprint is not None:
            found[version] = fingerprint
    return found
