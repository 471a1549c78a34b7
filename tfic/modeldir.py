"""The model-directory contract shared by the trainer (writer) and the inference service (reader).

Layout, as TensorFlow Serving expects it::

    <model_base_path>/<model_name>/<version>/saved_model.pb
                                            /variables/...
                                            /assets.extra/tfic.json     # ModelMetadata below
                                            /assets.extra/labels.json   # {"labels": [...]} (SageMaker's format)
                                            /assets.extra/labels.txt    # one label per line, index order

``<version>`` is a positive integer; the next version is one more than the largest present.
A version is written under ``<model_base_path>/<model_name>/.tmp-*`` and renamed into place in one
``os.rename``, so a reader never sees a partial version: TensorFlow Serving and tfic's own
watcher ignore names that are not integers.

Signatures of every exported SavedModel:

* ``serving_default``: ``image_bytes`` string [N] (encoded JPEG/PNG/GIF/BMP/WebP) → ``probabilities``
  float32 [N, C] and ``classes`` string [N, C] (the label of each column). Decoding, resizing and
  the backbone's scaling happen in the graph, so TensorFlow Serving serves it with no extra code; the
  pixels are tfic's preprocessing definition (:mod:`tfic.imaging`) bit for bit, except that EXIF
  orientation is not applied.
* ``predict_images``: ``images`` float32 [N, H, W, 3], RGB pixel values 0..255 already resized to
  the model's size → the same outputs. tfic's own paths decode with :mod:`tfic.imaging` and call this.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfic.errors import AlreadyExists, InvalidArgument, ModelNotFound

METADATA_DIR = "assets.extra"
METADATA_FILE = "tfic.json"
LABELS_JSON = "labels.json"
LABELS_TXT = "labels.txt"
FORMAT_VERSION = 1
# tfic.imaging's "image bytes → pixels" definition. 1: before it was one definition (training and the
# signature decoded with TensorFlow's fast IDCT and tf.image.resize, the service with Pillow); 2: one
# definition everywhere (DCT-scaled JPEG with the accurate IDCT, Pillow's resampling, EXIF orientation).
PREPROCESSING_DEFINITION = 2
LEGACY_PREPROCESSING_DEFINITION = 1

SIGNATURE_BYTES = "serving_default"
SIGNATURE_IMAGES = "predict_images"
INPUT_BYTES = "image_bytes"
INPUT_IMAGES = "images"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_CLASSES = "classes"

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TMP_PREFIX = ".tmp-"


def float_triple(values: Any) -> tuple[float, float, float]:
    """Three numbers read from JSON (mean, std); any other count raises ValueError."""
    first, second, third = (float(x) for x in values)
    return first, second, third


def int_triple(values: Any) -> tuple[int, int, int]:
    """An image shape read from JSON: height, width, channels."""
    height, width, channels = (int(x) for x in values)
    return height, width, channels


@dataclass(frozen=True)
class Preprocessing:
    """How 0..255 RGB pixels become the network's input: ``(x * scale + offset - mean) / std``.

    Carried inside the exported graph as well; recorded here so tools can show and check it.
    """

    scale: float = 1.0 / 255.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"
    # "stretch": the whole image is resized to H×W, in training (without augmentation) and serving.
    resize_mode: str = "stretch"
    # Which "image bytes → pixels" definition the model was trained with (metadata without it: 1).
    definition: int = PREPROCESSING_DEFINITION


# What a model's ``probabilities`` are. multi_class: a softmax over the labels (one predicted label);
# multi_label: one sigmoid per label, every label at or over ``threshold`` predicted; binary: one sigmoid,
# the probability of labels[1] (labels[0] when below ``threshold``). Metadata without it: multi_class.
OUTPUTS = ("multi_class", "multi_label", "binary")


@dataclass(frozen=True)
class ModelMetadata:
    labels: tuple[str, ...]
    image_shape: tuple[int, int, int]  # height, width, channels
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    architecture: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    dataset_fingerprint: str = ""
    # How the published weights were chosen: recipe, phases, epochs run, the exported epoch.
    training: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    tfic_version: str = ""
    format_version: int = FORMAT_VERSION
    output: str = "multi_class"  # one of OUTPUTS
    threshold: float = 0.5  # multi_label and binary: the probability at which a label is predicted

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def columns(self) -> tuple[str, ...]:
        """The label each column of ``probabilities`` is for: a binary model's one column is its positive label."""
        return self.labels[1:] if self.output == "binary" else self.labels

    @property
    def multi_label(self) -> bool:
        return self.output == "multi_label"

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        pre = data.get("preprocessing") or {}
        return cls(
            labels=tuple(str(x) for x in data["labels"]),
            image_shape=int_triple(data["image_shape"]),
            preprocessing=Preprocessing(
                scale=float(pre.get("scale", 1.0 / 255.0)),
                offset=float(pre.get("offset", 0.0)),
                mean=float_triple(pre.get("mean", (0.0, 0.0, 0.0))),
                std=float_triple(pre.get("std", (1.0, 1.0, 1.0))),
                interpolation=str(pre.get("interpolation", "bilinear")),
                resize_mode=str(pre.get("resize_mode", "stretch")),
                definition=int(pre.get("definition", LEGACY_PREPROCESSING_DEFINITION)),
            ),
            architecture=str(data.get("architecture", "")),
            hyperparameters=dict(data.get("hyperparameters") or {}),
            metrics={k: float(v) for k, v in (data.get("metrics") or {}).items()},
            dataset_fingerprint=str(data.get("dataset_fingerprint", "")),
            training=dict(data.get("training") or {}),
            created=str(data.get("created", "")),
            tfic_version=str(data.get("tfic_version", "")),
            format_version=int(data.get("format_version", FORMAT_VERSION)),
            output=_output(data.get("output", "multi_class")),
            threshold=float(data.get("threshold", 0.5)),
        )


def _output(value: Any) -> str:
    if value not in OUTPUTS:
        raise InvalidArgument(f"model metadata: unknown output kind {value!r} (known: {', '.join(OUTPUTS)})")
    return str(value)


def validate_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise InvalidArgument(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def list_versions(model_dir: Path) -> list[int]:
    """Published versions (integer-named directories holding a saved_model.pb), ascending."""
    if not model_dir.is_dir():
        return []
    versions = []
    for entry in model_dir.iterdir():
        if entry.name.isdigit() and int(entry.name) > 0 and (entry / "saved_model.pb").is_file():
            versions.append(int(entry.name))
    return sorted(versions)


def latest_version(model_dir: Path) -> int | None:
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def write_metadata(version_dir: Path, meta: ModelMetadata) -> None:
    extra = version_dir / METADATA_DIR
    extra.mkdir(parents=True, exist_ok=True)
    (extra / METADATA_FILE).write_text(meta.to_json() + "\n")
    (extra / LABELS_JSON).write_text(json.dumps({"labels": list(meta.labels)}) + "\n")
    (extra / LABELS_TXT).write_text("".join(f"{label}\n" for label in meta.labels))


def read_metadata(version_dir: Path) -> ModelMetadata:
    path = version_dir / METADATA_DIR / METADATA_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelNotFound(f"{version_dir} is not a tfic model version: {path} is missing") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read model metadata {path}: {exc}") from None
    try:
        return ModelMetadata.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        # A hand-edited or truncated metadata.json: say which file, not a bare KeyError from deep inside.
        raise InvalidArgument(f"model metadata {path} is malformed: {type(exc).__name__} {exc}") from None


def resolve_version_dir(path: str | Path) -> Path:
    """Accept ``BASE/NAME/VERSION`` or ``BASE/NAME`` (latest version) and return the version dir."""
    p = Path(path)
    if (p / "saved_model.pb").is_file():
        return p
    latest = latest_version(p)
    if latest is None:
        raise ModelNotFound(f"no model version found at {p} (expected {p}/<version>/saved_model.pb)")
    return p / str(latest)


class VersionWriter:
    """Stage a version in a temporary directory and publish it with one rename."""

    def __init__(self, model_base_path: str | Path, model_name: str) -> None:
        self.model_dir = Path(model_base_path) / validate_model_name(model_name)
        self.tmp: Path | None = None
        self.version: int | None = None
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=self.model_dir))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self.version, self.path = publish(self.tmp, self.model_dir)


def publish(tmp: Path, model_dir: Path, version: int | None = None) -> tuple[int, Path]:
    """Rename a complete staged directory to the next free version (or ``version``)."""
    if not (tmp / "saved_model.pb").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidArgument(f"refusing to publish {tmp}: it holds no saved_model.pb")
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; serving processes may run as another user
    for _ in range(100):
        target_version = version if version is not None else (latest_version(model_dir) or 0) + 1
        target = model_dir / str(target_version)
        try:
            # rename() of a directory onto an existing non-empty directory fails, so two
            # writers racing for the same number cannot overwrite each other.
            os.rename(tmp, target)
        except OSError:
            if version is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                raise AlreadyExists(f"model version {target} already exists") from None
            continue
        return target_version, target
    raise AlreadyExists(f"could not find a free version number under {model_dir}")


def clean_stale_staging(model_dir: Path) -> int:
    """Remove staging directories left by crashed writers; returns how many were removed."""
    removed = 0
    if model_dir.is_dir():
        for entry in model_dir.iterdir():
            if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def saved_probabilities(loaded: Any) -> Any | None:
    """A loaded version's pixels → float32 probabilities function, or None when it has none.

    Versions carry it as ``probabilities`` (what their signatures call, without the labels' string tile that
    XLA, TFLite and tf2onnx cannot take); versions exported before it carry the Keras model's own saved call
    as ``model``, cast here as the signatures cast it.
    """
    saved = getattr(loaded, "probabilities", None)
    if saved is not None:
        return saved
    model = getattr(loaded, "model", None)
    if model is None or not callable(model):
        return None
    import tensorflow as tf  # only callers that have loaded a SavedModel get here

    def via_model(images: Any) -> Any:
        return tf.cast(model(images, training=False), tf.float32)

    return via_model
