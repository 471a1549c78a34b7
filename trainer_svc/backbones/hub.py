"""Any TensorFlow SavedModel directory as a backbone (TF Hub's TF2 image formats and the like).

Accepted: a function taking float32 images ``[N, H, W, 3]`` and returning ``[N, D]`` — an image
feature vector, or a classification model whose scores are then used as features — or
``[N, h, w, D]``, which is average-pooled. The function is the object's ``__call__`` (TF Hub's
reusable SavedModels, any ``tf.Module``; a ``training`` argument is passed when it takes one) or
else a signature (``serving_default`` first). It is wrapped in :class:`SavedModelLayer`, whose
weights are the SavedModel's variables; the layer is trainable when the function has trainable
variables.

Defaults follow the TF Hub image conventions: inputs in [0, 1] (``scale=1/255``), and the
input size from the function's input spec, or 224×224 when it accepts any size. Override them
with a ``tfic_backbone.json`` file in the directory::

    {"name": "my_net", "input_size": [192, 192], "signature": "serving_default",
     "output_key": "feature_vector", "preprocessing": {"scale": 0.00784313725, "offset": -1.0}}

A model exported by tfic itself (with ``assets.extra/tfic.json``) is used through its
``predict_images`` signature, which takes 0..255 pixels at the size recorded in its metadata, and
its class probabilities become the features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfic.errors import InvalidArgument, NotFound
from tfic.modeldir import METADATA_DIR, METADATA_FILE, SIGNATURE_IMAGES, Preprocessing, float_triple, read_metadata
from trainer_svc.backbones.base import Backbone, check_input_shape

SIDECAR = "tfic_backbone.json"
CALL = "__call__"
DEFAULT_INPUT_SIZE = (224, 224)
HUB_PREPROCESSING = Preprocessing(scale=1.0 / 255.0, offset=0.0)
_PREFERRED_OUTPUTS = ("feature_vector", "default", "features", "pooled_output", "logits", "probabilities")


@dataclass(frozen=True)
class Endpoint:
    """Which function of the SavedModel to call, and how."""

    name: str  # CALL or a signature key
    input_key: str | None  # keyword of the image input (signatures only)
    output_key: str | None  # key of the output when the function returns a dict
    accepts_training: bool
    input_size: tuple[int, int] | None  # static (H, W) of the input spec, if any
    output_rank: int
    feature_dim: int | None


def _is_image_spec(spec: Any) -> bool:
    return (
        isinstance(spec, tf.TensorSpec)
        and spec.dtype == tf.float32
        and spec.shape.rank == 4
        and spec.shape[-1] in (3, None)
    )


def _static_hw(spec: tf.TensorSpec) -> tuple[int, int] | None:
    h, w = spec.shape[1], spec.shape[2]
    return (int(h), int(w)) if h is not None and w is not None else None


def _pick_output(outputs: Any, output_key: str | None, where: str) -> tuple[str | None, tf.TensorSpec]:
    if isinstance(outputs, tf.TensorSpec):
        if output_key is not None:
            raise InvalidArgument(f"{where} returns a single tensor; output_key {output_key!r} does not apply")
        return None, outputs
    if not isinstance(outputs, dict):
        raise InvalidArgument(f"{where} returns {type(outputs).__name__}, expected a tensor or a dict of tensors")
    if output_key is not None:
        if output_key not in outputs:
            raise InvalidArgument(f"{where} has no output {output_key!r}; outputs: {sorted(outputs)}")
        return output_key, outputs[output_key]
    usable = {
        k: v
        for k, v in outputs.items()
        if isinstance(v, tf.TensorSpec) and v.dtype.is_floating and v.shape.rank in (2, 4)
    }
    if len(usable) == 1:
        return next(iter(usable.items()))
    for key in _PREFERRED_OUTPUTS:
        if key in usable:
            return key, usable[key]
    raise InvalidArgument(
        f"{where} has several outputs {sorted(outputs)}; name the feature output as output_key in {SIDECAR}"
    )


def _concrete_functions(obj: Any, name: str) -> list[Any]:
    if name == CALL:
        fn = getattr(obj, CALL, None)
        return list(getattr(fn, "concrete_functions", None) or [])
    signature = obj.signatures.get(name) if hasattr(obj, "signatures") else None
    return [signature] if signature is not None else []


def _endpoint_from(obj: Any, name: str, output_key: str | None) -> Endpoint | None:
    """The endpoint ``name`` if it takes one float image batch, else None."""
    for concrete in _concrete_functions(obj, name):
        args, kwargs = concrete.structured_input_signature
        if name == CALL:
            if not args or not _is_image_spec(args[0]):
                continue
            spec = args[0]
            input_key = None
            accepts_training = len(args) > 1 or "training" in kwargs
        else:
            images = {k: v for k, v in kwargs.items() if _is_image_spec(v)}
            if args or len(kwargs) != 1 or len(images) != 1:
                continue
            input_key, spec = next(iter(images.items()))
            accepts_training = False
        key, out = _pick_output(concrete.structured_outputs, output_key, f"{name} of the SavedModel")
        dim = out.shape[-1]
        return Endpoint(
            name=name,
            input_key=input_key,
            output_key=key,
            accepts_training=accepts_training,
            input_size=_static_hw(spec),
            output_rank=int(out.shape.rank),
            feature_dim=int(dim) if dim is not None else None,
        )
    return None


def find_endpoint(obj: Any, signature: str | None = None, output_key: str | None = None) -> Endpoint:
    """The function to call: ``signature`` if given, else ``__call__``, else ``serving_default``, else any."""
    if signature is not None:
        names = [signature]
    else:
        signatures = sorted(getattr(obj, "signatures", {}).keys())
        names = [CALL, "serving_default", *(s for s in signatures if s != "serving_default")]
    for name in names:
        endpoint = _endpoint_from(obj, name, output_key)
        if endpoint is not None:
            return endpoint
    if signature is not None:
        raise InvalidArgument(f"SavedModel function {signature!r} missing or not taking float32 images [N, H, W, 3]")
    raise InvalidArgument("SavedModel has no function (__call__ or signature) taking float32 images [N, H, W, 3]")


def _variables(concretes: list[Any]) -> tuple[list[tf.Variable], list[tf.Variable]]:
    trainable: dict[Any, tf.Variable] = {}
    others: dict[Any, tf.Variable] = {}
    for concrete in concretes:
        for v in concrete.trainable_variables:
            trainable.setdefault(v.ref(), v)
    for concrete in concretes:
        for v in concrete.variables:
            if v.ref() not in trainable:
                others.setdefault(v.ref(), v)
    return list(trainable.values()), list(others.values())


class SavedModelLayer(keras.layers.Layer):  # type: ignore[misc]
    """A SavedModel function as a Keras layer; its variables become the layer's weights.

    Not reconstructible from ``get_config`` alone (like TF Hub's ``KerasLayer`` it holds the loaded
    object); models using it are saved and served as SavedModels, which carry the object along.
    """

    def __init__(self, path: str, endpoint: Endpoint, trainable: bool | None = None, **kwargs: Any) -> None:
        loaded = tf.saved_model.load(path)
        train_vars, other_vars = _variables(_concrete_functions(loaded, endpoint.name))
        super().__init__(trainable=bool(train_vars) if trainable is None else trainable, **kwargs)
        self._loaded = loaded
        self._path = path
        self._endpoint = endpoint
        for v in train_vars:
            self._add_existing_weight(v, trainable=True)
        for v in other_vars:
            self._add_existing_weight(v, trainable=False)
        self.built = True

    def _add_existing_weight(self, weight: tf.Variable, trainable: bool) -> None:
        self.add_weight(
            name=weight.name.split(":")[0],
            shape=weight.shape,
            dtype=weight.dtype,
            trainable=trainable,
            getter=lambda *_, **__: weight,
        )

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        endpoint = self._endpoint
        if endpoint.name == CALL:
            fn = getattr(self._loaded, CALL)
            if endpoint.accepts_training:
                # A frozen layer always runs in inference mode (batch norm statistics included).
                train = False if not self.trainable or training is None else training
                if isinstance(train, bool):
                    outputs = fn(inputs, training=train)
                else:  # a symbolic training flag
                    outputs = tf.cond(
                        tf.cast(train, tf.bool), lambda: fn(inputs, training=True), lambda: fn(inputs, training=False)
                    )
            else:
                outputs = fn(inputs)
        else:
            assert endpoint.input_key is not None
            outputs = self._loaded.signatures[endpoint.name](**{endpoint.input_key: inputs})
        if endpoint.output_key is not None:
            outputs = outputs[endpoint.output_key]
        if endpoint.output_rank == 4:
            outputs = tf.reduce_mean(outputs, axis=[1, 2])
        return outputs

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update({"path": self._path, "endpoint": self._endpoint.name, "output_key": self._endpoint.output_key})
        return config


def _read_sidecar(root: Path) -> dict[str, Any]:
    path = root / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: expected a JSON object")
    unknown = set(data) - {"name", "input_size", "signature", "output_key", "preprocessing"}
    if unknown:
        raise InvalidArgument(f"{path}: unknown keys {sorted(unknown)}")
    return data


def _preprocessing_from(data: dict[str, Any], where: str) -> Preprocessing:
    try:
        return Preprocessing(
            scale=float(data.get("scale", HUB_PREPROCESSING.scale)),
            offset=float(data.get("offset", 0.0)),
            mean=float_triple(data.get("mean", (0.0, 0.0, 0.0))),
            std=float_triple(data.get("std", (1.0, 1.0, 1.0))),
            interpolation=str(data.get("interpolation", "bilinear")),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{where}: bad preprocessing {data!r}: {exc}") from exc


def backbone(path: str | Path) -> Backbone:
    """A :class:`Backbone` for the SavedModel directory ``path`` (loaded once here to inspect it)."""
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise NotFound(f"backbone path {str(path)!r} does not exist", path=str(path))
    if not (root / "saved_model.pb").is_file() and not (root / "saved_model.pbtxt").is_file():
        raise InvalidArgument(f"{path} is not a SavedModel directory (no saved_model.pb)")
    sidecar = _read_sidecar(root)
    preprocessing = HUB_PREPROCESSING
    declared_size: tuple[int, int] | None = None
    signature = sidecar.get("signature")
    tfic_meta = root / METADATA_DIR / METADATA_FILE
    if not sidecar and tfic_meta.is_file():  # a model exported by tfic: 0..255 pixels in predict_images
        meta = read_metadata(root)
        signature = SIGNATURE_IMAGES
        declared_size = (meta.image_shape[0], meta.image_shape[1])
        preprocessing = Preprocessing(scale=1.0, offset=0.0)
    if "preprocessing" in sidecar:
        preprocessing = _preprocessing_from(sidecar["preprocessing"], str(root / SIDECAR))
    if "input_size" in sidecar:
        size = sidecar["input_size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(x, int) and x > 0 for x in size)):
            raise InvalidArgument(f"{root / SIDECAR}: input_size must be [height, width], got {size!r}")
        declared_size = (size[0], size[1])

    try:
        loaded = tf.saved_model.load(str(root))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise InvalidArgument(f"cannot load the SavedModel at {path}: {exc}") from exc
    endpoint = find_endpoint(loaded, signature, sidecar.get("output_key"))
    if endpoint.input_size is not None and declared_size is not None and declared_size != endpoint.input_size:
        raise InvalidArgument(f"{path}: declared input size {declared_size} but the model takes {endpoint.input_size}")
    input_size = endpoint.input_size or declared_size or DEFAULT_INPUT_SIZE
    feature_dim = endpoint.feature_dim
    if feature_dim is None:  # learn it from one call
        probe = SavedModelLayer(str(root), endpoint)
        feature_dim = int(probe(tf.zeros((1, *input_size, 3), tf.float32)).shape[-1])
    name = str(sidecar.get("name") or root)
    fixed_size = endpoint.input_size

    def build(input_shape: tuple[int, int, int]) -> keras.Model:
        shape = check_input_shape(input_shape)
        if fixed_size is not None and shape[:2] != fixed_size:
            raise InvalidArgument(f"SavedModel backbone {name!r} takes {fixed_size[0]}x{fixed_size[1]} images only")
        inputs = keras.Input(shape=shape, name="images")
        features = SavedModelLayer(str(root), endpoint, name="saved_model")(inputs)
        return keras.Model(inputs, features, name="saved_model_backbone")

    return Backbone(
        name=name,
        input_size=input_size,
        preprocessing=preprocessing,
        feature_dim=feature_dim,
        pretrained=True,
        builder=build,
        description=f"SavedModel {root} ({endpoint.name})",
        weights=str(root),
    )


__all__ = ["Endpoint", "SavedModelLayer", "backbone", "find_endpoint"]
