"""Check a job request before it is accepted: its name, channels, data locations, hyperparameters.

Everything a client can get wrong is refused here with a precise message (INVALID_ARGUMENT,
NOT_FOUND, PERMISSION_DENIED), so a job that is accepted fails later only for reasons the request
could not show (an undecodable dataset, a worker crash). Hyperparameters are validated by the same
:func:`trainer_svc.training.hyperparameters.parse` the CLI uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tfic.errors import InvalidArgument
from tfic.modeldir import validate_model_name
from trainer_svc.backbones.registry import canonical_name, list_backbones
from trainer_svc.data.manifest import parse_attribute_names, read_lines
from trainer_svc.service import s3
from trainer_svc.service.datapaths import DataRoots, check_no_nul
from trainer_svc.service.jobs import TRAIN_CHANNEL, VALIDATION_CHANNEL, Channel, JobSpec
from trainer_svc.training import hyperparameters

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
CHANNEL_NAMES = {"train": TRAIN_CHANNEL, "training": TRAIN_CHANNEL, "validation": VALIDATION_CHANNEL}
FORMATS = ("folder", "lst", "recordio", "tfrecord", "manifest")


def validate_job_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(
            f"invalid job name {name!r}: use 1-63 letters, digits and hyphens, starting with a letter or digit",
            name=name,
        )
    return name


@dataclass(frozen=True)
class DataPolicy:
    """Where jobs may read data from, and where the server publishes models."""

    roots: DataRoots
    model_base_path: Path
    s3: s3.S3Options

    def check_location(self, uri: str, what: str, roots: DataRoots | None = None) -> None:
        check_no_nul(uri, what)
        if s3.is_s3(uri):
            s3.check_exists(uri, self.s3, what)
        elif "://" in uri:
            raise InvalidArgument(f"{what} {uri!r}: only local paths and s3:// URIs are supported", uri=uri)
        else:
            (roots or self.roots).resolve(uri, what)


def check_manifest_images(manifest: Path, channel: Channel, roots: DataRoots) -> None:
    """Every local image a manifest names must lie under the data roots (``s3://`` ones are fetched)."""
    if not manifest.is_file():
        return
    for line in read_lines(manifest, channel.attribute_names):
        if not s3.is_s3(line.image):
            path = line.image if Path(line.image).is_absolute() else str(manifest.parent / line.image)
            roots.resolve(path, f"{channel.name} channel: {manifest}, line {line.line}: image")


def check_spec(job_name: str, spec: JobSpec, policy: DataPolicy) -> JobSpec:
    """The spec with channel names canonical and the model name filled in; raises on any mistake.

    Touches the filesystem and S3: call it off the event loop.
    """
    hyperparameters.parse(spec.hyperparameters)
    channels: dict[str, Channel] = {}
    for channel in spec.channels:
        name = CHANNEL_NAMES.get(channel.name.strip().lower())
        if name is None:
            raise InvalidArgument(
                f"unknown channel {channel.name!r}: use 'train' (or 'training') and optionally 'validation'",
                channel=channel.name,
            )
        if name in channels:
            raise InvalidArgument(f"channel {name!r} is given more than once", channel=name)
        if not channel.uri.strip():
            raise InvalidArgument(f"channel {name!r} has no uri", channel=name)
        if channel.format is not None and channel.format not in FORMATS:
            raise InvalidArgument(
                f"channel {name!r}: unknown format {channel.format!r}; use one of {', '.join(FORMATS)}"
            )
        if channel.attribute_names is not None:
            parse_attribute_names(channel.attribute_names)
            if not s3.is_manifest(channel.uri, channel.format):
                raise InvalidArgument(f"channel {name!r}: attribute_names apply to augmented manifests only")
        policy.check_location(channel.uri, f"{name} channel", None)
        if not s3.is_s3(channel.uri) and s3.is_manifest(channel.uri, channel.format):
            check_manifest_images(policy.roots.resolve(channel.uri, f"{name} channel"), channel, policy.roots)
        if channel.image_root:
            if s3.is_s3(channel.image_root) != s3.is_s3(channel.uri):
                raise InvalidArgument(f"channel {name!r}: the image_root and the list must both be local or both in S3")
            policy.check_location(channel.image_root, f"{name} channel image_root")
        channels[name] = Channel(
            name, channel.uri, channel.format, channel.image_root or None, channel.attribute_names or None
        )
    if TRAIN_CHANNEL not in channels:
        raise InvalidArgument("a 'train' channel is required")
    model_name = validate_model_name(spec.model_name or job_name)
    base_model = check_base_model(spec.base_model, policy) if spec.base_model else None
    ordered = tuple(channels[n] for n in (TRAIN_CHANNEL, VALIDATION_CHANNEL) if n in channels)
    return JobSpec(ordered, dict(spec.hyperparameters), model_name, base_model, spec.promote)


def is_model_path(base_model: str) -> bool:
    """Whether ``base_model`` names a path (a tfic model) rather than a backbone."""
    text = base_model.strip()
    return "/" in text or text.startswith((".", "~")) or "://" in text


def check_base_model(base_model: str, policy: DataPolicy) -> str:
    """A backbone name, or the path of a tfic model (under the data roots or the model base path)."""
    text = base_model.strip()
    if is_model_path(text):
        if "://" in text:
            raise InvalidArgument(f"base_model {text!r}: only local paths are supported for base models")
        roots = DataRoots([*policy.roots.roots, policy.model_base_path])
        roots.resolve(text, "base_model")
        return text
    if canonical_name(text) is None:
        raise InvalidArgument(
            f"unknown base_model {text!r}; use a backbone ({', '.join(list_backbones())}) or the path of a model",
            base_model=text,
        )
    return text
