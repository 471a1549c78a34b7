"""Decide what network to build: full training, transfer from a backbone, or incremental.

A :class:`ModelPlan` is everything needed to build the same classifier again, which is what
incremental training does with a previous version's metadata.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tf_keras as keras

from tfic.errors import IncompatibleModel, InvalidHyperparameter
from tfic.modeldir import PREPROCESSING_DEFINITION, ModelMetadata, Preprocessing, read_metadata, resolve_version_dir
from trainer_svc.training import architectures
from trainer_svc.training.hyperparameters import Hyperparameters

DEFAULT_PRETRAINED = "efficientnet_lite0"


@dataclass(frozen=True)
class ModelPlan:
    architecture: str  # "small_cnn", "resnet18", "backbone:<name or path>"
    image_shape: tuple[int, int, int]
    preprocessing: Preprocessing
    build_features: Callable[[], keras.Model]
    pretrained: bool
    # Incremental training: the version to restore, and whether its head is kept.
    restore_from: Path | None = None
    keep_head: bool = False


def plan(
    hp: Hyperparameters, base_model: str | None, class_names: tuple[str, ...], base_model_weights: str | None = None
) -> ModelPlan:
    interpolation = hp.image_resize_interpolation
    if base_model is None and hp.use_pretrained_model:
        base_model = DEFAULT_PRETRAINED
    if base_model and _is_tfic_version(base_model):
        return _incremental(hp, base_model, class_names)
    if base_model:
        return _transfer(hp, base_model, interpolation, base_model_weights)
    if hp.train_only_top_layer:
        raise InvalidHyperparameter("train_only_top_layer=true needs a pretrained --base-model to freeze")
    name = "small_cnn" if hp.model == "small_cnn" else f"resnet{hp.num_layers}"
    size = architectures.default_input_size(hp.model, hp.num_layers)
    shape = hp.image_shape or (size, size, 3)

    def build() -> keras.Model:
        if hp.model == "small_cnn":
            return architectures.small_cnn(shape)
        return architectures.resnet(hp.num_layers, shape)

    return ModelPlan(name, shape, Preprocessing(interpolation=interpolation), build, pretrained=False)


def _is_tfic_version(base_model: str) -> bool:
    p = Path(base_model)
    if not p.exists():
        return False
    try:
        read_metadata(resolve_version_dir(p))
    except Exception:
        return False
    return True


def _transfer(hp: Hyperparameters, name: str, interpolation: str, weights: str | None) -> ModelPlan:
    from trainer_svc.backbones.registry import get_backbone

    backbone = get_backbone(name, weights=weights)
    h, w = backbone.input_size
    shape = hp.image_shape or (h, w, 3)
    pre = backbone.preprocessing
    preprocessing = Preprocessing(pre.scale, pre.offset, pre.mean, pre.std, interpolation, pre.resize_mode)
    return ModelPlan(
        f"backbone:{name}", shape, preprocessing, lambda: backbone.build(shape), pretrained=backbone.pretrained
    )


def _incremental(hp: Hyperparameters, base_model: str, class_names: tuple[str, ...]) -> ModelPlan:
    version_dir = resolve_version_dir(base_model)
    meta: ModelMetadata = read_metadata(version_dir)
    if hp.image_shape is not None and hp.image_shape != meta.image_shape:
        raise IncompatibleModel(
            f"image_shape {_shape(hp.image_shape)} does not match the base model's {_shape(meta.image_shape)} "
            f"({version_dir}); omit image_shape or use the same one"
        )
    same_classes = tuple(meta.labels) == tuple(class_names)
    reinit = hp.reinitialize_top_layer
    if reinit == "False" and not same_classes:
        raise IncompatibleModel(
            _class_mismatch(meta.labels, class_names, version_dir) + "; reinitialize_top_layer=False"
        )
    if reinit == "Auto" and not same_classes:
        raise IncompatibleModel(
            _class_mismatch(meta.labels, class_names, version_dir)
            + "; set reinitialize_top_layer=True to train a new head"
        )
    if same_classes and reinit != "True" and meta.output != hp.output:
        raise IncompatibleModel(
            f"the base model {version_dir} is {meta.output.replace('_', '-')}, this run trains "
            f"{hp.output.replace('_', '-')}: its head cannot be kept; set reinitialize_top_layer=True for a new one"
        )
    keep_head = same_classes and reinit != "True"
    arch = meta.architecture
    shape = meta.image_shape
    previous = Hyperparameters(
        model="small_cnn" if arch == "small_cnn" else "resnet",
        num_layers=int(arch[len("resnet") :]) if arch.startswith("resnet") else 18,
    )
    if arch.startswith("backbone:"):
        from trainer_svc.backbones.registry import get_backbone

        # Weights come from the previous version, not the backbone's pretrained file.
        source = arch.split(":", 1)[1]
        is_path = Path(source).expanduser().exists()
        backbone = get_backbone(source, weights=None if is_path else "none")

        def build() -> keras.Model:
            return backbone.build(shape)

    elif arch in ("small_cnn",) or arch.startswith("resnet"):

        def build() -> keras.Model:
            if previous.model == "small_cnn":
                return architectures.small_cnn(shape)
            return architectures.resnet(previous.num_layers, shape)

    else:
        raise IncompatibleModel(f"base model {version_dir} has unknown architecture {arch!r}")
    # This run trains on today's preprocessing definition, whatever the base version was trained on.
    pre = dataclasses.replace(meta.preprocessing, definition=PREPROCESSING_DEFINITION)
    return ModelPlan(arch, shape, pre, build, pretrained=True, restore_from=version_dir, keep_head=keep_head)


def _shape(shape: tuple[int, int, int]) -> str:
    return f"{shape[2]},{shape[0]},{shape[1]}"


def _class_mismatch(old: tuple[str, ...], new: tuple[str, ...], where: Path) -> str:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    detail = []
    if added:
        detail.append(f"new classes {added}")
    if removed:
        detail.append(f"missing classes {removed}")
    if not detail:
        detail.append("same classes in a different order")
    return f"the data's classes differ from the base model's ({where}): {', '.join(detail)}"
