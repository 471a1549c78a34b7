"""SageMaker-compatible hyperparameters: one table, one parser, shared by the CLI and the service.

Names follow SageMaker's "Image Classification - TensorFlow" algorithm; the MXNet algorithm's
names are accepted as aliases. Values may arrive as strings (CLI flags, JSON files written by
SageMaker tooling, the gRPC string map) or as native JSON values. An unknown name or a value out
of range raises :class:`InvalidHyperparameter` naming what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tfic.errors import InvalidHyperparameter
from tfic.imaging import INTERPOLATIONS

RESNET_DEPTHS = (18, 34, 50, 101, 152, 200, 20, 32, 44, 56, 110)


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidHyperparameter(f"{name}: expected true or false, got {raw!r}", name=name)


def _number(name: str, raw: Any, kind: type) -> Any:
    if isinstance(raw, bool):
        raise InvalidHyperparameter(f"{name}: expected a number, got {raw!r}", name=name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidHyperparameter(f"{name}: expected a number, got {raw!r}", name=name) from None
    if not math.isfinite(value):
        raise InvalidHyperparameter(f"{name}: expected a finite number, got {raw!r}", name=name)
    if kind is int:
        if not value.is_integer():
            raise InvalidHyperparameter(f"{name}: expected an integer, got {raw!r}", name=name)
        return int(value)
    return value


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # int, float, bool, choice, str, int_list, image_shape
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    aliases: tuple[str, ...] = ()
    rejected: str = ""  # accepted name, but tfic refuses any value but the default, with this reason
    # "auto" (the default, stored as None) lets the training recipe decide; see trainer_svc/training/recipe.py.
    auto: bool = False

    @property
    def default_text(self) -> str:
        if self.auto and self.default is None:
            return "auto"
        if self.kind == "image_shape" and self.default is None:
            return "model's own"
        if self.kind == "int_list":
            return ",".join(map(str, self.default)) or "none"
        return str(self.default)

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in (("auto",) if self.auto else ()) + self.choices)
        lo = "" if self.low is None else (f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
        hi = "" if self.high is None else (f"< {self.high:g}" if self.high_open else f"<= {self.high:g}")
        if self.kind == "bool":
            return "auto, true or false" if self.auto else "true or false"
        text = " and ".join(x for x in (lo, hi) if x) or "any value"
        return f"auto, or {text}" if self.auto else text

    def allowed_text(self) -> str:
        """What a user may give: the range, or, for a name tfic accepts but refuses to change, why not."""
        return f"default only — {self.rejected}" if self.rejected else self.describe_range()

    def parse(self, raw: Any) -> Any:
        value: Any
        if self.auto and (raw is None or str(raw).strip().lower() == "auto"):
            return None
        if self.kind == "bool":
            value = _bool(self.name, raw)
        elif self.kind in ("int", "float"):
            value = _number(self.name, raw, int if self.kind == "int" else float)
            self._check_range(value)
        elif self.kind == "choice":
            value = self._parse_choice(raw)
        elif self.kind == "int_list":
            value = self._parse_int_list(raw)
        elif self.kind == "image_shape":
            value = parse_image_shape(raw)
        else:
            value = str(raw)
        if self.rejected and value != self.default:
            raise InvalidHyperparameter(f"{self.name}={raw!r} is not supported: {self.rejected}", name=self.name)
        return value

    def _check_range(self, value: float) -> None:
        bad = (self.low is not None and (value < self.low or (self.low_open and value == self.low))) or (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )
        if bad:
            raise InvalidHyperparameter(
                f"{self.name}={value:g} is out of range: must be {self.describe_range()}", name=self.name
            )

    def _parse_choice(self, raw: Any) -> Any:
        for choice in self.choices:
            if isinstance(choice, int) and not isinstance(raw, bool):
                try:
                    if float(raw) == choice:
                        return choice
                except (TypeError, ValueError):
                    continue
            elif str(raw).strip().lower() == str(choice).lower():
                return choice
        raise InvalidHyperparameter(
            f"{self.name}={raw!r} is not allowed: must be {self.describe_range()}", name=self.name
        )

    def _parse_int_list(self, raw: Any) -> tuple[int, ...]:
        items = raw if isinstance(raw, list | tuple) else [x for x in str(raw).replace(" ", "").split(",") if x]
        values = tuple(_number(self.name, x, int) for x in items)
        if any(v < 1 for v in values) or list(values) != sorted(set(values)):
            raise InvalidHyperparameter(
                f'{self.name}={raw!r}: expected increasing positive epoch numbers such as "10,20"', name=self.name
            )
        return values


def parse_image_shape(raw: Any) -> tuple[int, int, int] | None:
    """MXNet's "C,H,W" (e.g. "3,224,224"); "H,W" and a single "S" are accepted too. Returns (H, W, C)."""
    if raw is None or str(raw).strip() in ("", "auto", "none"):
        return None
    parts = [p for p in str(raw).replace(" ", "").replace("x", ",").split(",") if p]
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 1:
        nums = [3, nums[0], nums[0]]
    elif len(nums) == 2:
        nums = [3, *nums]
    if len(nums) != 3 or nums[0] != 3 or not (8 <= nums[1] <= 2048 and 8 <= nums[2] <= 2048):
        raise InvalidHyperparameter(
            f'image_shape={raw!r}: expected "3,H,W" with 3 channels and 8 <= H, W <= 2048 (e.g. "3,224,224")',
            name="image_shape",
        )
    return nums[1], nums[2], nums[0]


SPECS: tuple[Spec, ...] = (
    Spec(
        "recipe",
        "choice",
        "tfic",
        "tfic: head warm-up, fine-tune with decay, best epoch published; sagemaker: SageMaker's literal behaviour",
        choices=("tfic", "sagemaker"),
    ),
    Spec(
        "epochs",
        "int",
        None,
        "passes over the training data; transfer: fine-tuning epochs, after head_epochs (tfic: 5, frozen "
        "backbone 10; otherwise 3 as in SageMaker)",
        1,
        100_000,
        auto=True,
    ),
    Spec(
        "head_epochs",
        "int",
        None,
        "transfer: epochs training only a new head on the frozen backbone before fine-tuning (tfic: 10)",
        0,
        100_000,
        auto=True,
    ),
    Spec("batch_size", "int", 32, "images per step (global, across devices)", 1, 8192, aliases=("mini_batch_size",)),
    Spec("learning_rate", "float", 0.001, "optimizer step size (transfer: the head's)", 0, 10, low_open=True),
    Spec(
        "lr_schedule",
        "choice",
        None,
        "learning-rate schedule (tfic: cosine decay while fine-tuning; step with lr_scheduler_step)",
        choices=("constant", "cosine", "step"),
        auto=True,
    ),
    Spec(
        "optimizer",
        "choice",
        "adam",
        "optimizer",
        choices=("adam", "sgd", "nesterov", "rmsprop", "adagrad", "adadelta", "nag"),
    ),
    Spec("momentum", "float", 0.9, "sgd/nesterov/rmsprop momentum", 0, 1, high_open=True),
    Spec("beta_1", "float", 0.9, "adam beta_1", 0, 1, low_open=True, high_open=True),
    Spec("beta_2", "float", 0.999, "adam beta_2", 0, 1, low_open=True, high_open=True),
    Spec("epsilon", "float", 1e-7, "optimizer epsilon", 0, 1, low_open=True, aliases=("eps",)),
    Spec("rho", "float", 0.95, "rmsprop/adadelta decay", 0, 1, low_open=True, high_open=True, aliases=("gamma",)),
    Spec("initial_accumulator_value", "float", 1e-4, "adagrad initial accumulator", 0, 1e3),
    Spec("regularizers_l2", "float", 1e-4, "L2 penalty on the dense head", 0, 1, aliases=("weight_decay",)),
    Spec("dropout_rate", "float", 0.2, "dropout before the dense head", 0, 1, high_open=True),
    Spec("label_smoothing", "float", 0.1, "label smoothing of the cross-entropy", 0, 1, high_open=True),
    Spec("early_stopping", "bool", False, "stop when validation loss stops improving"),
    Spec(
        "export_epoch",
        "choice",
        None,
        "which epoch's weights are published (tfic: best validation accuracy; sagemaker: last)",
        choices=("best", "last"),
        auto=True,
    ),
    Spec("early_stopping_patience", "int", 5, "epochs without improvement before stopping", 1, 10_000),
    Spec("early_stopping_min_delta", "float", 0.0, "smallest absolute improvement that counts", 0, 1e6),
    Spec("early_stopping_min_epochs", "int", 0, "never stop before this many epochs", 0, 100_000),
    Spec(
        "early_stopping_tolerance",
        "float",
        None,
        "MXNet's rule instead: watch validation accuracy; an epoch improves on the best only if "
        "(accuracy - best) / best exceeds this",
        0,
        1,
        auto=True,
    ),
    Spec(
        "validation_split_ratio",
        "float",
        0.2,
        "share of training data held out when no validation channel is given",
        0,
        1,
        low_open=True,
        high_open=True,
        aliases=("validation-split-ratio",),
    ),
    Spec("image_shape", "image_shape", None, '"3,H,W" input size (default: the model\'s own)'),
    Spec("model", "choice", "resnet", "architecture for full training", choices=("resnet", "small_cnn")),
    Spec("num_layers", "choice", 18, "ResNet depth for full training", choices=RESNET_DEPTHS),
    Spec("top_k", "int", 5, "k of the top-k accuracy metric", 1, 1000),
    Spec("lr_scheduler_step", "int_list", (), "epochs at which the learning rate is multiplied by the factor"),
    Spec("lr_scheduler_factor", "float", 0.1, "learning-rate decay factor", 0, 1, low_open=True),
    Spec(
        "use_weighted_loss",
        "bool",
        False,
        "multi_label (MXNet): each label's positives weighted by its negatives/positives ratio in the training data; "
        "otherwise (tfic) classes weighted by inverse frequency",
    ),
    Spec("checkpoint_frequency", "int", 1, "epochs between checkpoints (0: none; --resume needs them)", 0, 100_000),
    Spec("precision_dtype", "choice", "float32", "compute precision", choices=("float32", "float16", "bfloat16")),
    Spec(
        "image_resize_interpolation",
        "choice",
        "bilinear",
        "resize method (Pillow's filters; gaussian, mitchellcubic and lanczos5 are aliases of bilinear, bicubic and "
        "Lanczos-3)",
        choices=INTERPOLATIONS,
    ),
    Spec(
        "augmentation",
        "bool",
        None,
        "random flip / rotation / zoom during training (tfic: light flip + zoom while fine-tuning a backbone)",
        auto=True,
    ),
    Spec(
        "augmentation_random_flip",
        "choice",
        "horizontal_and_vertical",
        "flip mode when augmenting",
        choices=("none", "horizontal", "vertical", "horizontal_and_vertical"),
    ),
    Spec("augmentation_random_rotation", "float", 0.2, "max rotation as a fraction of 2π", 0, 1),
    Spec("augmentation_random_zoom", "float", 0.1, "max zoom fraction", 0, 1, high_open=True),
    Spec(
        "augmentation_type",
        "choice",
        "none",
        "MXNet-style augmentation (implies augmentation=true)",
        choices=("none", "crop", "crop_color", "crop_color_transform"),
    ),
    # MXNet's ImageRecordIter augmenter (src/io/image_aug_default.cc), under SageMaker's MXNet names. Any of them
    # given turns augmentation on (as augmentation_type does), and overrides augmentation_type's level.
    Spec(
        "max_random_aspect_ratio",
        "float",
        None,
        "MXNet: aspect ratio changed by a random factor in [1 - v, 1 + v] (crop_color_transform: 0.25)",
        0,
        1,
        high_open=True,
        auto=True,
    ),
    Spec(
        "max_random_h",
        "int",
        None,
        "MXNet: a random value in [-v, v] added to the hue (OpenCV's 0..180 scale; crop_color: 36)",
        0,
        180,
        auto=True,
    ),
    Spec(
        "max_random_s",
        "int",
        None,
        "MXNet: a random value in [-v, v] added to the HSL saturation (0..255 scale; crop_color: 50)",
        0,
        255,
        auto=True,
    ),
    Spec(
        "max_random_l",
        "int",
        None,
        "MXNet: a random value in [-v, v] added to the HSL lightness (0..255 scale; crop_color: 50)",
        0,
        255,
        auto=True,
    ),
    Spec(
        "max_random_rotate_angle",
        "int",
        None,
        "MXNet: rotation by a random whole number of degrees in [-v, v] (crop_color_transform: 10)",
        0,
        360,
        auto=True,
    ),
    Spec(
        "max_random_shear_ratio",
        "float",
        None,
        "MXNet: shear (x, y) -> (x + m y, y) with m random in [-v, v] (crop_color_transform: 0.1)",
        0,
        1,
        auto=True,
    ),
    Spec(
        "max_random_scale",
        "float",
        None,
        "MXNet: the image is scaled by s random in [min_random_scale, max_random_scale], then cropped (or padded) "
        "back to image_shape (crop: 1.143, a 224-of-256 crop)",
        0,
        10,
        low_open=True,
        auto=True,
    ),
    Spec(
        "min_random_scale",
        "float",
        None,
        "MXNet: the smallest scale s (see max_random_scale; below 1 the image is padded with white, MXNet's fill)",
        0,
        10,
        low_open=True,
        auto=True,
    ),
    Spec("seed", "int", 12345, "seed for shuffling, splitting, augmentation and initialisation", 0, 2**31 - 1),
    Spec("train_only_top_layer", "bool", False, "freeze the backbone and train only the head"),
    Spec("reinitialize_top_layer", "choice", "Auto", "new head for a base model", choices=("Auto", "True", "False")),
    Spec(
        "backbone_learning_rate_multiplier",
        "float",
        None,
        "fine-tuning: backbone lr = learning_rate × this (tfic: 0.1; sagemaker: 1)",
        0,
        1,
        auto=True,
    ),
    Spec(
        "cache_backbone_features",
        "bool",
        True,
        "frozen backbone without pixel augmentation: compute its features once, train the head on them",
    ),
    Spec("use_pretrained_model", "bool", False, "MXNet's transfer-learning switch (= --base-model efficientnet_lite0)"),
    Spec("num_classes", "int", 0, "checked against the data when given", 0, 1_000_000),
    Spec("num_training_samples", "int", 0, "checked against the data when given", 0, 10**10),
    Spec(
        "multi_label",
        "bool",
        False,
        "MXNet's multi-label training: several labels per image (.lst label columns, RecordIO labels), one "
        "sigmoid per class, every label over prediction_threshold predicted",
    ),
    Spec(
        "label_format",
        "choice",
        "auto",
        "multi_label: .lst/RecordIO labels are class ids ([0, 2]) or a multi-hot vector ([1, 0, 1]); auto: "
        "multi-hot when every row has one 0/1 value per class (SageMaker's label-format content-type parameter)",
        choices=("auto", "multi-hot", "class-id"),
        aliases=("label-format",),
    ),
    Spec(
        "prediction_threshold",
        "float",
        0.5,
        "multi_label and binary_mode: a class is predicted when its probability is at least this (kept in the "
        "model's metadata)",
        0,
        1,
        low_open=True,
        high_open=True,
    ),
    Spec(
        "binary_mode",
        "bool",
        False,
        "the TF algorithm's binary mode: 2 classes, one sigmoid output, the probability of the second (positive) "
        "class; its label is predicted at or over prediction_threshold",
    ),
    Spec(
        "eval_metric",
        "choice",
        "accuracy",
        "the validation metric the best epoch is chosen by (binary_mode: also precision, recall, auc (ROC), "
        "prc (precision-recall AUC), as the TF algorithm defines them)",
        choices=("accuracy", "precision", "recall", "auc", "prc"),
    ),
    Spec(
        "resize",
        "int",
        0,
        "MXNet pre-crop resize",
        0,
        100_000,
        rejected="tfic resizes whole images to image_shape in training and serving alike (no crop skew)",
    ),
    Spec("kv_store", "str", "", "MXNet distribution mode", rejected="use --strategy multi-worker instead"),
)

_BY_NAME: dict[str, Spec] = {}
for _spec in SPECS:
    _BY_NAME[_spec.name] = _spec
    for _alias in _spec.aliases:
        _BY_NAME[_alias] = _spec


@dataclass(frozen=True)
class Hyperparameters:
    recipe: str = "tfic"
    epochs: int | None = None
    head_epochs: int | None = None
    batch_size: int = 32
    learning_rate: float = 0.001
    lr_schedule: str | None = None
    optimizer: str = "adam"
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    rho: float = 0.95
    initial_accumulator_value: float = 1e-4
    regularizers_l2: float = 1e-4
    dropout_rate: float = 0.2
    label_smoothing: float = 0.1
    early_stopping: bool = False
    export_epoch: str | None = None
    early_stopping_patience: int = 5
    early_stopping_min_delta: float = 0.0
    early_stopping_min_epochs: int = 0
    early_stopping_tolerance: float | None = None
    validation_split_ratio: float = 0.2
    image_shape: tuple[int, int, int] | None = None
    model: str = "resnet"
    num_layers: int = 18
    top_k: int = 5
    lr_scheduler_step: tuple[int, ...] = ()
    lr_scheduler_factor: float = 0.1
    use_weighted_loss: bool = False
    checkpoint_frequency: int = 1
    precision_dtype: str = "float32"
    image_resize_interpolation: str = "bilinear"
    augmentation: bool | None = None
    augmentation_random_flip: str = "horizontal_and_vertical"
    augmentation_random_rotation: float = 0.2
    augmentation_random_zoom: float = 0.1
    augmentation_type: str = "none"
    max_random_aspect_ratio: float | None = None
    max_random_h: int | None = None
    max_random_s: int | None = None
    max_random_l: int | None = None
    max_random_rotate_angle: int | None = None
    max_random_shear_ratio: float | None = None
    max_random_scale: float | None = None
    min_random_scale: float | None = None
    seed: int = 12345
    train_only_top_layer: bool = False
    reinitialize_top_layer: str = "Auto"
    backbone_learning_rate_multiplier: float | None = None
    cache_backbone_features: bool = True
    use_pretrained_model: bool = False
    num_classes: int = 0
    num_training_samples: int = 0
    multi_label: bool = False
    label_format: str = "auto"
    prediction_threshold: float = 0.5
    binary_mode: bool = False
    eval_metric: str = "accuracy"
    resize: int = 0
    kv_store: str = ""

    @property
    def output(self) -> str:
        """The model's output kind (:data:`tfic.modeldir.OUTPUTS`)."""
        if self.binary_mode:
            return "binary"
        return "multi_label" if self.multi_label else "multi_class"

    @property
    def canonical_optimizer(self) -> str:
        return "nesterov" if self.optimizer == "nag" else self.optimizer

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def parse(values: Mapping[str, Any]) -> Hyperparameters:
    """Validate a name → value mapping (strings or JSON values) into :class:`Hyperparameters`."""
    parsed: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for raw_name, raw in values.items():
        name = raw_name.strip()
        spec = _BY_NAME.get(name) or _BY_NAME.get(name.replace("-", "_"))
        if spec is None:
            raise InvalidHyperparameter(_unknown_message(raw_name), name=raw_name)
        if spec.name in given_as:
            raise InvalidHyperparameter(
                f"{spec.name} is given twice (as {given_as[spec.name]!r} and {raw_name!r})", name=spec.name
            )
        given_as[spec.name] = raw_name
        parsed[spec.name] = spec.parse(raw)
    hp = Hyperparameters(**parsed)
    _check_consistency(hp)
    return hp


def _family(name: str) -> str:
    """The group a name belongs to by its leading words: ``max_random_*``/``min_random_*`` (MXNet's augmenter),
    ``augmentation_*`` (the TF algorithm's), ``early_stopping_*``, ``lr_*``..."""
    words = name.split("_")
    if len(words) > 2 and words[0] in ("max", "min") and words[1] == "random":
        return "mxnet_random"
    return words[0] if len(words) > 1 else ""


def suggestions(name: str) -> list[str]:
    """Accepted names close to ``name``, those of its own family first (a misspelt MXNet augmentation name
    gets MXNet's, not the TF algorithm's ``augmentation_*`` that merely share letters)."""
    wanted = name.strip().replace("-", "_").lower()
    words = set(wanted.split("_")) - {"max", "min", "random", ""}
    scored = []
    for candidate in _BY_NAME:
        ratio = difflib.SequenceMatcher(None, wanted, candidate).ratio()
        # A shared word (or one that abbreviates the other: h/hue) says more than shared letters.
        theirs = candidate.split("_")
        ratio += sum(
            0.3 if w in theirs else 0.15 * any(w.startswith(t) or t.startswith(w) for t in theirs) for w in words
        )
        same_family = bool(_family(wanted)) and _family(wanted) == _family(candidate)
        if ratio >= 0.6 or (same_family and ratio >= 0.5):
            scored.append((same_family, ratio, candidate))
    scored.sort(key=lambda item: (not item[0], -item[1], item[2]))
    if any(same for same, _, _ in scored):
        scored = [item for item in scored if item[0]]
    return [candidate for _, _, candidate in scored[:3]]


def _unknown_message(name: str) -> str:
    close = suggestions(name)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown hyperparameter {name!r}{hint} (allowed: {', '.join(s.name for s in SPECS)})"


def check_scheduler_steps(hp: Hyperparameters, epochs: int) -> None:
    """MXNet's step schedule must step within the main phase's ``epochs`` (given, or chosen by the recipe)."""
    if hp.lr_scheduler_step and hp.lr_scheduler_step[-1] > epochs:
        given = f"epochs={epochs}" if hp.epochs is not None else f"the recipe's {epochs} epochs (epochs=auto)"
        raise InvalidHyperparameter(
            f"lr_scheduler_step={','.join(map(str, hp.lr_scheduler_step))} has steps beyond {given}",
            name="lr_scheduler_step",
        )


def _check_consistency(hp: Hyperparameters) -> None:
    if hp.eval_metric != "accuracy" and not hp.binary_mode:
        raise InvalidHyperparameter(
            f"eval_metric={hp.eval_metric} needs binary_mode=true (as in SageMaker's TF algorithm)", name="eval_metric"
        )
    if hp.binary_mode and hp.multi_label:
        raise InvalidHyperparameter(
            "binary_mode and multi_label are two different outputs: choose one", name="binary_mode"
        )
    if hp.label_format != "auto" and not hp.multi_label:
        raise InvalidHyperparameter(
            f"label_format={hp.label_format} applies to multi-label training: set multi_label=1", name="label_format"
        )
    low, high = hp.min_random_scale or 1.0, hp.max_random_scale or 1.0
    if low > high:
        raise InvalidHyperparameter(
            f"min_random_scale={low:g} is above max_random_scale={high:g}"
            + (" (the default 1)" if hp.max_random_scale is None or hp.min_random_scale is None else ""),
            name="min_random_scale" if hp.min_random_scale is not None else "max_random_scale",
        )
    if hp.early_stopping_tolerance is not None and hp.early_stopping_min_delta != 0.0:
        raise InvalidHyperparameter(
            "early_stopping_tolerance (MXNet's relative rule on validation accuracy) and early_stopping_min_delta "
            "(the TF algorithm's absolute rule on validation loss) are two ways to say the same: give one",
            name="early_stopping_tolerance",
        )
    if hp.epochs is not None:
        check_scheduler_steps(hp, hp.epochs)
    if hp.lr_schedule == "step" and not hp.lr_scheduler_step:
        raise InvalidHyperparameter(
            'lr_schedule=step needs lr_scheduler_step (epochs such as "10,20")', name="lr_schedule"
        )
    if hp.lr_scheduler_step and hp.lr_schedule not in (None, "step"):
        raise InvalidHyperparameter(
            f"lr_scheduler_step is given with lr_schedule={hp.lr_schedule}; use lr_schedule=step or omit it",
            name="lr_schedule",
        )
    multiplier = hp.backbone_learning_rate_multiplier
    if hp.precision_dtype == "float16" and multiplier is not None and multiplier < 1.0:
        raise InvalidHyperparameter(
            "backbone_learning_rate_multiplier < 1 is not supported with precision_dtype=float16 (loss scaling); "
            "use bfloat16",
            name="backbone_learning_rate_multiplier",
        )
    if hp.precision_dtype != "float32" and hp.optimizer in ("adadelta",):
        raise InvalidHyperparameter(
            "precision_dtype float16/bfloat16 is not supported with adadelta", name="precision_dtype"
        )


def load_json(path: str | Path) -> dict[str, Any]:
    """A SageMaker-style hyperparameters file: one JSON object of name → value (values often strings)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidHyperparameter(f"hyperparameters file {path} does not exist") from None
    except ValueError as exc:
        raise InvalidHyperparameter(f"hyperparameters file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidHyperparameter(f"hyperparameters file {path} must hold a JSON object of name: value")
    return data


def markdown_table() -> str:
    """The hyperparameter table of docs/training.md (scripts/gen_hyperparameter_docs.py writes it there)."""
    rows = ["| name | aliases | default | allowed | what it does |", "|---|---|---|---|---|"]
    for spec in SPECS:
        aliases = ", ".join(f"`{a}`" for a in spec.aliases)
        rows.append(f"| `{spec.name}` | {aliases} | `{spec.default_text}` | {spec.allowed_text()} | {spec.help} |")
    return "\n".join(rows)


def specs() -> tuple[Spec, ...]:
    return SPECS


def cli_flag_names() -> list[str]:
    """Every accepted name (canonical and aliases), for building ``--name VALUE`` flags."""
    return sorted(_BY_NAME)


Parser = Callable[[Mapping[str, Any]], Hyperparameters]
