"""Every hyperparameter name of SageMaker's two image-classification algorithms, and what tfic does with each.

The lists are the algorithms' documented names (AWS's IC-Hyperparameter and IC-TF-Hyperparameter pages, as
gathered in the project's reference notes). tfic's status of each is not written here but read from the one
hyperparameter table (:mod:`trainer_svc.training.hyperparameters`): a name is *supported* when it is a
hyperparameter's own name, an *alias* when it is another spelling of one, *refused* when tfic accepts only its
default (with the reason). A name the table does not know makes :func:`status` raise, so the generated table in
docs/training.md cannot leave one out or go stale (tests/trainer_svc/training/test_docs.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer_svc.training.hyperparameters import SPECS, Spec

MXNET = (
    "num_classes",
    "num_training_samples",
    "augmentation_type",
    "beta_1",
    "beta_2",
    "checkpoint_frequency",
    "early_stopping",
    "early_stopping_min_epochs",
    "early_stopping_patience",
    "early_stopping_tolerance",
    "epochs",
    "eps",
    "gamma",
    "image_shape",
    "kv_store",
    "learning_rate",
    "lr_scheduler_factor",
    "lr_scheduler_step",
    "max_random_aspect_ratio",
    "max_random_h",
    "max_random_l",
    "max_random_rotate_angle",
    "max_random_s",
    "max_random_scale",
    "max_random_shear_ratio",
    "min_random_scale",
    "mini_batch_size",
    "momentum",
    "multi_label",
    "num_layers",
    "optimizer",
    "precision_dtype",
    "resize",
    "top_k",
    "use_pretrained_model",
    "use_weighted_loss",
    "weight_decay",
)
TENSORFLOW = (
    "augmentation",
    "augmentation_random_flip",
    "augmentation_random_rotation",
    "augmentation_random_zoom",
    "batch_size",
    "beta_1",
    "beta_2",
    "binary_mode",
    "dropout_rate",
    "early_stopping",
    "early_stopping_min_delta",
    "early_stopping_patience",
    "epochs",
    "epsilon",
    "eval_metric",
    "image_resize_interpolation",
    "initial_accumulator_value",
    "label_smoothing",
    "learning_rate",
    "momentum",
    "optimizer",
    "regularizers_l2",
    "reinitialize_top_layer",
    "rho",
    "train_only_top_layer",
    "validation_split_ratio",
    "validation-split-ratio",  # AWS's training script spells it with hyphens
)


# Where tfic's meaning differs from an algorithm's, or the name does more than its row in the main table says.
NOTES = {
    "num_classes": "inferred from the data; checked against it when given",
    "num_training_samples": "inferred; checked against the channel's size (before the validation split) when given",
    "epochs": "recipe=tfic: fine-tuning epochs after head_epochs (see The recipe); recipe=sagemaker: SageMaker's",
    "image_shape": "images are resized whole to it (no crop), in training and serving alike",
    "optimizer": "both algorithms' values; MXNet's nag is nesterov",
    "top_k": "the top-k accuracy metric; tfic predict and the services also return the top k at inference",
    "mini_batch_size": "global batch, as the TF algorithm's batch_size (MXNet's is per machine)",
    "weight_decay": "L2 on the dense head, as the TF algorithm's regularizers_l2",
    "use_weighted_loss": "MXNet's meaning for multi_label; class weights by inverse frequency otherwise",
    "early_stopping_tolerance": "MXNet's relative rule on validation accuracy; exclusive with early_stopping_min_delta",
    "use_pretrained_model": "1 means --base-model efficientnet_lite0 (real ImageNet weights, offline)",
    "checkpoint_frequency": "checkpoints for --resume; the published epoch is export_epoch's choice",
    "precision_dtype": "also bfloat16; the softmax stays float32",
}


@dataclass(frozen=True)
class NameStatus:
    name: str
    algorithms: tuple[str, ...]
    spec: Spec
    status: str  # supported, alias, refused

    def describe(self) -> str:
        if self.status == "refused":
            default = self.spec.default_text or "empty"
            return f"refused (only the default, `{default}`): {self.spec.rejected}"
        if self.status == "alias":
            return f"alias of `{self.spec.name}`"
        return "supported"


def status(name: str, algorithms: tuple[str, ...] = ()) -> NameStatus:
    for spec in SPECS:
        if name == spec.name or name in spec.aliases:
            kind = "refused" if spec.rejected else ("supported" if name == spec.name else "alias")
            return NameStatus(name, algorithms, spec, kind)
    raise KeyError(f"SageMaker's hyperparameter {name!r} is not in tfic's table")


def statuses() -> list[NameStatus]:
    """Each name of either algorithm once, in alphabetical order, with the algorithms that have it."""
    names = sorted(set(MXNET) | set(TENSORFLOW))
    return [status(n, tuple(a for a, listed in (("MXNet", MXNET), ("TF", TENSORFLOW)) if n in listed)) for n in names]


HEADER = "| SageMaker name | algorithm | in tfic | notes |"


def markdown_table() -> str:
    """docs/training.md's table of SageMaker's names (scripts/gen_hyperparameter_docs.py writes it there)."""
    rows = [HEADER, "|---|---|---|---|"]
    rows += [
        f"| `{s.name}` | {', '.join(s.algorithms)} | {s.describe()} | {NOTES.get(s.name, '')} |" for s in statuses()
    ]
    return "\n".join(rows)
