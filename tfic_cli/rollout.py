"""``tfic models``: fleet-wide version labels in the shared model repository (:mod:`tfic.version_labels`).

``promote`` validates the version first (:mod:`trainer_svc.training.validation`: it loads, predicts on a
sample, optionally reaches an accuracy) and then moves the label in one atomic write; every inference server
reading the repository follows on its next poll. ``rollback`` is one label move back to the version the label
named before (no validation: that version served under the label already). ``MODEL`` is the model's folder,
``BASE/NAME``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from tfic import version_labels as vl
from tfic.errors import FailedPrecondition, InvalidArgument, NotFound
from tfic.modeldir import list_versions
from tfic_cli.extras import missing_extra


def configure(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    p.description = (
        "Move a model's version labels (stable, canary) in the shared model repository; every inference server "
        "serving that folder follows on its next poll (docs/inference.md, Fleet rollout)."
    )
    which = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    labels = which.add_parser("labels", help="print a model's labels, canary share and label history (JSON)")
    labels.add_argument("model", type=Path, help="the model's folder, BASE/NAME")
    labels.set_defaults(handler=_labels)

    promote = which.add_parser("promote", help="validate VERSION and point a label (default stable) at it")
    promote.add_argument("model", type=Path, help="the model's folder, BASE/NAME")
    promote.add_argument("version", type=int)
    promote.add_argument("--label", default=vl.STABLE, help="stable, canary or another label")
    promote.add_argument(
        "--canary-share", type=float, help="share of unlabelled requests the canary answers (0..1; kept in the file)"
    )
    promote.add_argument("--sample", type=Path, help="a folder or image file predicted on as a check")
    promote.add_argument("--validation-data", help="labelled data (any tfic format) for --min-accuracy")
    promote.add_argument("--image-root", help="folder that .lst paths of --validation-data are relative to")
    promote.add_argument("--min-accuracy", type=float, help="refuse below this accuracy (mAP: multi-label)")
    promote.add_argument(
        "--skip-validation", action="store_true", help="move the label without validating (recorded in the history)"
    )
    promote.set_defaults(handler=_promote)

    rollback = which.add_parser("rollback", help="point a label back at the version it named before")
    rollback.add_argument("model", type=Path, help="the model's folder, BASE/NAME")
    rollback.add_argument("--label", default=vl.STABLE)
    rollback.set_defaults(handler=_rollback)

    unlabel = which.add_parser("unlabel", help="remove a label (e.g. end a canary)")
    unlabel.add_argument("model", type=Path, help="the model's folder, BASE/NAME")
    unlabel.add_argument("--label", default=vl.CANARY)
    unlabel.set_defaults(handler=_unlabel)


def _labels(args: argparse.Namespace) -> int:
    _check_model(args.model)
    current = vl.read(args.model) or vl.VersionLabels()
    print(json.dumps(current.to_json(), indent=2))
    return 0


def _promote(args: argparse.Namespace) -> int:
    if (args.validation_data is None) != (args.min_accuracy is None):
        raise InvalidArgument("--validation-data and --min-accuracy go together")
    _check_model(args.model)
    try:  # TensorFlow: only promote needs the trainer extra
        from trainer_svc.training.predict import list_images
        from trainer_svc.training.promotion import promote_version
    except ModuleNotFoundError as exc:
        error = missing_extra("trainer", exc)
        raise exc if error is None else error from exc
    promotion = promote_version(
        args.model,
        args.version,
        args.label,
        canary_share=args.canary_share,
        samples=list_images(args.sample) if args.sample else None,
        data=args.validation_data,
        min_accuracy=args.min_accuracy,
        image_root=args.image_root,
        skip_validation=args.skip_validation,
    )
    for check in promotion.checks:
        print(f"validated: {check}")
    print(f"{args.model.name}: {promotion.label} -> version {promotion.version}; labels {promotion.labels}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    label = vl.check_label(args.label)
    _check_model(args.model)
    with vl.locked(args.model) as current:
        now = current.labels.get(label)
        if now is None:
            raise FailedPrecondition(f"{args.model.name} has no {label!r} label to roll back")
        previous = vl.previous_version(current, label)
        if previous is None:
            raise FailedPrecondition(f"{args.model.name}: the label history holds no version before {label}={now}")
        if previous not in list_versions(args.model):
            raise FailedPrecondition(f"{args.model.name}: version {previous} ({label} before) is no longer on disk")
        updated = vl.moved(current, label, previous, "rollback")
        if label == vl.STABLE and updated.canary == now:
            updated = vl.moved(updated, vl.CANARY, None, "rollback")  # the rolled-back version leaves traffic
        vl.write(args.model, updated)
    print(f"{args.model.name}: {label} -> version {previous} (was {now}); labels {dict(updated.labels)}")
    return 0


def _unlabel(args: argparse.Namespace) -> int:
    label = vl.check_label(args.label)
    _check_model(args.model)
    with vl.locked(args.model) as current:
        if label not in current.labels:
            raise FailedPrecondition(f"{args.model.name} has no {label!r} label")
        if label == vl.STABLE:
            raise FailedPrecondition("the stable label is moved (promote, rollback), not removed")
        updated = vl.moved(current, label, None, "unlabel")
        vl.write(args.model, updated)
    print(f"{args.model.name}: removed {label}; labels {dict(updated.labels)}")
    return 0


def _check_model(model: Path) -> Path:
    if not model.is_dir() or not list_versions(model):
        raise NotFound(f"{model} is not a model folder with versions (expected {model}/<version>/saved_model.pb)")
    return model
