"""What a backbone is: a pretrained feature extractor plus the facts needed to feed it.

A :class:`Backbone` is a frozen description; :meth:`Backbone.build` makes a fresh Keras model that
maps float32 images, **already scaled** per :attr:`Backbone.preprocessing`, to pooled features
``[N, feature_dim]``. The caller (the training pipeline) adds the scaling layer in front and the
dropout and dense head behind, so the one preprocessing definition is used in training and in the
exported serving graph alike.

Rules for implementations:

* ``build`` returns a new, independent model on every call (no shared variables between calls).
* It raises :class:`tfic.errors.TficError` subclasses for expected failures: an input shape the
  backbone cannot take (:class:`InvalidArgument`), weights that cannot be had
  (:class:`WeightsUnavailable`).
* Batch normalisation: fine-tuning code keeps BN in inference mode by calling the backbone model
  with ``training=False`` or by setting ``trainable = False`` on :meth:`Backbone.bn_layers`
  (in tf_keras a non-trainable ``BatchNormalization`` layer runs in inference mode).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tfic.errors import FailedPrecondition, InvalidArgument, NotFound
from tfic.modeldir import Preprocessing

if TYPE_CHECKING:
    import tf_keras as keras

ModelBuilder = Callable[[tuple[int, int, int]], "keras.Model"]

# Spellings of the ``weights`` argument that are not paths.
WEIGHTS_IMAGENET = "imagenet"
WEIGHTS_RANDOM = "random"
_WEIGHT_KEYWORDS = {
    "imagenet": WEIGHTS_IMAGENET,
    "pretrained": WEIGHTS_IMAGENET,
    "random": WEIGHTS_RANDOM,
    "none": WEIGHTS_RANDOM,
    "scratch": WEIGHTS_RANDOM,
}


class WeightsUnavailable(FailedPrecondition):
    """Pretrained weights that cannot be had here (no network, package not installed…)."""

    reason = "weights_unavailable"


@dataclass(frozen=True)
class Backbone:
    """A feature extractor and how to feed it (see the module docstring for the rules)."""

    name: str
    input_size: tuple[int, int]  # (height, width) the weights were trained at
    preprocessing: Preprocessing
    feature_dim: int
    pretrained: bool
    builder: ModelBuilder = field(repr=False, compare=False)
    description: str = ""
    # Where the weights come from, for logs and model metadata ("imagenet", a path, "random").
    weights: str = ""
    # Optional: the pretrained classifier (logits over ``class_names``) for deploying as is.
    classifier_builder: ModelBuilder | None = field(default=None, repr=False, compare=False)
    class_names: tuple[str, ...] = field(default=(), repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The default input shape: ``(*input_size, 3)``."""
        return (self.input_size[0], self.input_size[1], 3)

    def build(self, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
        """A new model: scaled float32 images ``[N, H, W, 3]`` → pooled features ``[N, feature_dim]``."""
        return self.builder(check_input_shape(input_shape or self.image_shape))

    @property
    def has_classifier(self) -> bool:
        return self.classifier_builder is not None

    def build_classifier(self, input_shape: tuple[int, int, int] | None = None) -> keras.Model:
        """A new model: scaled images → logits over :attr:`class_names` (no softmax)."""
        if self.classifier_builder is None:
            raise FailedPrecondition(f"backbone {self.name!r} has no pretrained classifier")
        return self.classifier_builder(check_input_shape(input_shape or self.image_shape))

    @staticmethod
    def bn_layers(model: keras.Model) -> list[keras.layers.Layer]:
        """Every BatchNormalization layer in ``model``, nested models included."""
        return batch_norm_layers(model)


def batch_norm_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    import tf_keras as keras

    found: list[keras.layers.Layer] = []
    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batch_norm_layers(layer))
    return found


def check_input_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(x) for x in input_shape)
    if len(shape) != 3 or shape[2] != 3 or shape[0] < 1 or shape[1] < 1:
        raise InvalidArgument(f"backbone input shape must be (height, width, 3), got {tuple(input_shape)}")
    return (shape[0], shape[1], shape[2])


def parse_weights(weights: str | None) -> str | Path | None:
    """``None`` (the backbone's default), ``WEIGHTS_IMAGENET``, ``WEIGHTS_RANDOM`` or an existing path.

    Raises NotFound for a path that does not exist, with a hint when it looks like a misspelt keyword.
    """
    if weights is None:
        return None
    text = weights.strip()
    keyword = _WEIGHT_KEYWORDS.get(text.lower())
    if keyword is not None:
        return keyword
    if text == "":
        return WEIGHTS_RANDOM
    path = Path(text).expanduser()
    if not path.exists():
        hint = ""
        close = difflib.get_close_matches(text.lower(), list(_WEIGHT_KEYWORDS), n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        raise NotFound(
            f"weights file {text!r} not found (use 'imagenet', 'random' or the path of a weights file){hint}",
            weights=text,
        )
    return path
