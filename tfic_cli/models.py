"""``tfic train``, ``tfic evaluate``, ``tfic predict`` and ``tfic backbones``: the commands about models.

Each ``configure_*`` declares one command's arguments (``tfic_cli.main`` calls only the one that
runs); the trainer's modules are imported inside them and the handlers, not at import time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfic.argparsing import DefaultsHelpFormatter
from tfic.errors import InvalidArgument
from tfic_cli.extras import missing_extra


def configure_backbones(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    which = p.add_subparsers(dest="backbones_command", metavar="ACTION", required=True)
    ls = which.add_parser("list", help="the backbones --base-model accepts")
    ls.set_defaults(handler=_backbones_list)
    ex = which.add_parser(
        "export",
        help="publish a backbone's pretrained ImageNet classifier as a model version (deploy it as is)",
    )
    ex.add_argument("name", help="backbone name, e.g. efficientnet_lite0")
    ex.add_argument("--model-base-path", required=True, type=Path)
    ex.add_argument("--model-name", required=True)
    ex.set_defaults(handler=_backbones_export)


def _backbones_list(args: argparse.Namespace) -> int:
    from trainer_svc.backbones.registry import get_backbone, list_backbones

    for name in list_backbones():
        b = get_backbone(name)
        print(
            f"{name:<22} input {b.input_size[0]}x{b.input_size[1]}  features {b.feature_dim:<5} "
            f"{'pretrained (offline)' if b.pretrained else 'weights: a local file or imagenet (network)'}"
        )
    return 0


def _backbones_export(args: argparse.Namespace) -> int:
    from trainer_svc.training.pretrained import export_pretrained

    version, path = export_pretrained(args.name, args.model_base_path, args.model_name)
    print(f"wrote {args.model_name} version {version} to {path}")
    return 0


def configure_train(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    from trainer_svc.data.loader import CLI_FORMATS
    from trainer_svc.training.strategy import STRATEGIES

    p.description = (
        "Train from DATA (a class-folder directory, a .lst with --image-root, a .rec, or a .tfrecord) and write "
        "the next version to MODEL_BASE_PATH/MODEL_NAME/<version>/ (TensorFlow Serving layout). "
        "Hyperparameters use SageMaker's names, as --name VALUE flags or a JSON file; flags override the file."
    )
    p.formatter_class = DefaultsHelpFormatter
    p.add_argument("data", help="training data")
    p.add_argument("--validation", help="validation data (default: a seeded stratified split of DATA)")
    p.add_argument("--format", choices=CLI_FORMATS, help="data format (default: inferred from the path)")
    p.add_argument("--image-root", help="folder that .lst paths are relative to (default: the .lst's folder)")
    p.add_argument("--validation-image-root", help="image root for a .lst validation channel")
    p.add_argument(
        "--attribute-names",
        help="an augmented manifest's image and label attributes, SageMaker's AttributeNames "
        "(default: source-ref and the one other attribute)",
    )
    p.add_argument("--model-base-path", required=True, type=Path, help="model repository root")
    p.add_argument("--model-name", required=True, help="model name (a folder under the base path)")
    p.add_argument("--base-model", help="backbone name (transfer learning) or a tfic model version (incremental)")
    p.add_argument(
        "--base-model-weights",
        help="weights for a Keras Applications backbone: a local .h5 file, 'imagenet' (needs the network) or 'random'",
    )
    p.add_argument("--hyperparameters", type=Path, help="JSON file of hyperparameters (SageMaker's format)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--work-dir", type=Path, help="checkpoint directory (default: BASE/.work/NAME)")
    p.add_argument(
        "--tensorboard-dir",
        type=Path,
        help="TensorBoard event files, kept after the run (default: the work directory's path + .tensorboard, "
        "BASE/.work/NAME.tensorboard)",
    )
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard event files")
    p.add_argument("--strategy", choices=STRATEGIES, default="auto", help="distribution strategy")
    p.add_argument("--metrics-log", type=Path, help="append one JSON object per event/epoch to this file")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--s3-endpoint-url", help="an S3-compatible server for s3:// data (MinIO, Ceph, moto)")
    from tfic.settings import add_arguments
    from trainer_svc.training.rendezvous import WorkerStartup

    add_arguments(p, WorkerStartup)
    add_hyperparameter_flags(p)
    p.set_defaults(handler=_train)


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """``--<name> VALUE`` (and ``--<name-with-dashes>``) for every hyperparameter and alias."""
    from trainer_svc.training.hyperparameters import specs

    group = parser.add_argument_group("hyperparameters (SageMaker names; aliases accepted)")
    seen: set[str] = set()
    for spec in specs():
        options = []
        for n in (spec.name, *spec.aliases):
            for opt in (f"--{n}", f"--{n.replace('_', '-')}"):
                if opt not in seen:
                    seen.add(opt)
                    options.append(opt)
        group.add_argument(
            *options,
            dest=f"hp__{spec.name}",
            metavar="V",
            action="append",
            help=f"{spec.help} ({spec.allowed_text()}; default {spec.default_text})",
        )


def hyperparameter_values(args: argparse.Namespace) -> dict[str, Any]:
    from trainer_svc.training.hyperparameters import load_json

    values: dict[str, Any] = load_json(args.hyperparameters) if args.hyperparameters else {}
    for key, given in vars(args).items():
        if key.startswith("hp__") and given:
            if len(given) > 1:
                raise InvalidArgument(f"hyperparameter {key[4:]} is given {len(given)} times")
            name = key[4:]
            # A flag overrides the file, whatever spelling (alias) the file used.
            from trainer_svc.training.hyperparameters import SPECS

            spec = next(s for s in SPECS if s.name == name)
            for alias in (name, *spec.aliases):
                values.pop(alias, None)
            values[name] = given[0]
    return values


def _train(args: argparse.Namespace) -> int:
    from tfic.settings import from_args
    from trainer_svc.data.manifest import parse_attribute_names
    from trainer_svc.service.s3 import S3Options, fetch
    from trainer_svc.training import hyperparameters
    from trainer_svc.training.events import JsonLinesSink, fan_out, null_sink
    from trainer_svc.training.rendezvous import StartupInterrupted, WorkerStartup
    from trainer_svc.training.train import Channel, TrainRequest, run, tensorboard_dir_for

    startup = from_args(WorkerStartup, args)
    hp = hyperparameters.parse(hyperparameter_values(args))
    names = parse_attribute_names(args.attribute_names)
    # s3:// data is copied next to the work directory first (the readers read local files), as the Trainer
    # service's workers copy it into a job's cache; the copy goes when the run ends.
    cache = args.model_base_path / ".work" / f"{args.model_name}.s3"
    options = S3Options(args.s3_endpoint_url)
    train, image_root = fetch(args.data, args.image_root, args.format, names, cache / "train", options)
    validation, validation_root = (
        fetch(args.validation, args.validation_image_root, args.format, names, cache / "validation", options)
        if args.validation
        else (None, None)
    )
    request = TrainRequest(
        train=Channel(train, args.format, image_root, names),
        validation=Channel(validation, args.format, validation_root, names) if validation else None,
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        hyperparameters=hp,
        base_model=args.base_model,
        base_model_weights=args.base_model_weights,
        work_dir=args.work_dir,
        tensorboard=not args.no_tensorboard,
        tensorboard_dir=args.tensorboard_dir,
        resume=args.resume,
        strategy=args.strategy,
        progress=not args.no_progress and sys.stderr.isatty(),
        worker_startup=startup,
    )
    sinks = [_print_sink] if not args.json else [JsonLinesSink(stream=sys.stdout)]
    metrics_log = JsonLinesSink(args.metrics_log) if args.metrics_log else None
    if metrics_log is not None:
        sinks.append(metrics_log)
    try:
        result = run(request, fan_out(*sinks) if sinks else null_sink)
    except StartupInterrupted as exc:
        # Stopped before training began: no traceback, and the status a process killed by the signal has.
        print(f"tfic train: {exc.message}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if metrics_log is not None:
            metrics_log.close()
    if result.path is not None and not args.json:
        print(f"wrote {args.model_name} version {result.version} to {result.path}")
    if result.path is not None and not args.json and request.tensorboard:
        print(f"TensorBoard: tensorboard --logdir {tensorboard_dir_for(request)}", file=sys.stderr)
    return 0


def _print_sink(event: dict[str, Any]) -> None:
    from trainer_svc.training.events import describe

    kind = event.get("type")
    if kind in ("data", "recipe", "features", "base", "epoch", "early_stopping", "report"):
        print(describe(event), file=sys.stderr)
    if kind == "data":
        for s in event["skipped"]:
            print(f"  skipped {s['key']}: {s['reason']}", file=sys.stderr)
    elif kind == "model" and event.get("exported_epoch") is not None:
        epoch = event["exported_epoch"]
        print(f"published epoch {epoch}" + (" (the base version's weights)" if epoch == 0 else ""), file=sys.stderr)


def configure_evaluate(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    p.description = (
        "Accuracy, top-k accuracy, per-class precision/recall/F1 and a confusion matrix (a PNG with --confusion-png "
        "or --output-dir); for a multi-label model, per-class precision/recall/F1/AP and mAP."
    )
    p.add_argument("model", help="BASE/NAME (latest version) or BASE/NAME/VERSION, local or s3://")
    p.add_argument("data", help="labelled data in any supported format, local or s3://")
    from trainer_svc.data.loader import CLI_FORMATS

    p.add_argument("--format", choices=CLI_FORMATS, help="data format (default: inferred from the path)")
    p.add_argument("--image-root")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--confusion-png", type=Path, help="save the confusion matrix as this PNG (default: none)")
    p.add_argument(
        "--output-dir",
        type=Path,
        help="write report.json (and confusion_matrix.png for a single-label model) into this folder",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a report")
    p.add_argument("--s3-endpoint-url", help="an S3-compatible server for s3:// models and data (MinIO, Ceph, moto)")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.training.evaluate import MultiLabelEvaluation, evaluate_model, format_report, save_confusion_png

    if args.top_k < 1:
        raise InvalidArgument("--top-k must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tfic-evaluate-") as tmp:
        # s3:// models and data are copied first (only the version evaluated), as tfic train copies its data.
        model, data, image_root = _local_inputs(args, Path(tmp))
        # Evaluation data may hold only some of the classes; labels are matched by name. Several label values per
        # row are read as SageMaker's multi-label formats (class ids or a multi-hot vector).
        source = scan(load_source(data, args.format, image_root, check_classes=False, label_format="auto"))
        result = evaluate_model(model, source, top_k=args.top_k, batch_size=args.batch_size)
    # Files only where asked (--confusion-png, --output-dir): an evaluation run from any folder leaves none behind.
    report = result.to_dict()
    pngs: list[Path] = []
    if isinstance(result, MultiLabelEvaluation):  # no confusion matrix: labels are not exclusive
        if args.confusion_png:
            raise InvalidArgument(f"{args.model} is a multi-label model: it has no confusion matrix")
    else:
        report["top_k_accuracy"] = result.top_k_accuracy
        if args.output_dir:
            args.output_dir.mkdir(parents=True, exist_ok=True)
        targets = [args.confusion_png] + ([args.output_dir / "confusion_matrix.png"] if args.output_dir else [])
        pngs = [save_confusion_png(result, target) for target in targets if target is not None]
        if pngs:
            report["confusion_png"] = str(pngs[-1])
    if args.output_dir:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return 0
    print(format_report(result))
    for png in pngs:
        print(f"\nconfusion matrix saved to {png}")
    if args.output_dir:
        print(f"report saved to {args.output_dir / 'report.json'}")
    return 0


def _local_inputs(args: argparse.Namespace, tmp: Path) -> tuple[str, str, str | None]:
    """``tfic evaluate``'s model and data as local paths, ``s3://`` ones copied under ``tmp``."""
    from trainer_svc.service.s3 import S3Options, fetch, fetch_model, is_s3

    options = S3Options(args.s3_endpoint_url)
    model = str(fetch_model(args.model, tmp / "model", options)) if is_s3(args.model) else args.model
    data, image_root = fetch(args.data, args.image_root, args.format, None, tmp / "data", options)
    return model, data, image_root


def configure_predict(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    p.description = (
        'Print {"probabilities", "labels", "predicted_label"} for one image, or JSON Lines (one object per '
        "image, like SageMaker batch transform) for several images or a folder."
    )
    p.add_argument(
        "model",
        nargs="?",
        help="BASE/NAME[/VERSION], local or s3://, for local prediction (omit with --server/--gateway)",
    )
    p.add_argument("images", nargs="+", help="image files or folders, local or s3:// (an object or a prefix)")
    p.add_argument("--top-k", type=int, default=0, help="only the K most probable classes, highest first")
    p.add_argument("--server", help="inference service HOST:PORT (gRPC)")
    p.add_argument("--gateway", help="gateway URL, e.g. http://localhost:8080")
    p.add_argument("--model-name", help="model name on the server or gateway")
    p.add_argument("--s3-endpoint-url", help="an S3-compatible server for s3:// models and images (local prediction)")
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    if args.top_k < 0:
        raise InvalidArgument("--top-k must be >= 0")
    targets = list(args.images)
    if args.server or args.gateway:
        from tfic_cli import remote  # grpc/httpx only: no TensorFlow for remote prediction

        if args.model is not None:
            targets.insert(0, args.model)
        code: int = remote.predict(args, targets)
        return code
    if args.model is None:
        raise InvalidArgument("give a model path, or --server/--gateway")
    try:
        from trainer_svc.training.predict import LocalPredictor, list_images, predict_paths  # TensorFlow: local only
    except ModuleNotFoundError as exc:
        error = missing_extra("trainer", exc)
        raise exc if error is None else error from exc

    with tempfile.TemporaryDirectory(prefix="tfic-predict-") as tmp:
        return _predict_local(args, targets, Path(tmp), LocalPredictor, list_images, predict_paths)


def _predict_local(
    args: argparse.Namespace, targets: list[str], tmp: Path, predictor_class: Any, list_images: Any, predict_paths: Any
) -> int:
    from trainer_svc.service.s3 import S3Options, download, fetch_model, is_s3

    options = S3Options(args.s3_endpoint_url)
    model = fetch_model(args.model, tmp / "model", options) if is_s3(args.model) else args.model
    # s3:// images are copied first; results name them by their URI, as local ones by their path.
    local: list[tuple[str, Path]] = []
    for i, target in enumerate(targets):
        local.append((target, download(target, tmp / f"images-{i}", options) if is_s3(target) else Path(target)))
    sources: dict[Path, str] = {}
    paths = []
    for target, path in local:
        for found in list_images(path):
            paths.append(found)
            if is_s3(target):
                relative = found.relative_to(path).as_posix() if path.is_dir() else ""
                sources[found] = f"{target.rstrip('/')}/{relative}" if relative else target
    if not paths:
        raise InvalidArgument(f"no images found in {', '.join(targets)}")
    predictor = predictor_class(model)
    single = len(paths) == 1 and local[0][1].is_file()
    failures = 0
    progress = _progress(len(paths)) if not single else None
    for result in predict_paths(predictor, paths, args.top_k):
        result["source"] = sources.get(Path(result["source"]), result["source"])
        if progress is not None:
            progress.update(1)
        if "error" in result:
            failures += 1
        if single:
            if "error" in result:
                raise InvalidArgument(f"{result['source']}: {result['error']}")
            result.pop("source")
            print(json.dumps(result))
        else:
            print(json.dumps(result), flush=True)
    if progress is not None:
        progress.close()
    return 1 if failures else 0


def _progress(total: int) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr)
