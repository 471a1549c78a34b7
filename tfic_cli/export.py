"""``tfic export``: a model version as a TensorFlow Lite or ONNX file for the edge (docs/export.md)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from tfic.errors import InvalidArgument
from tfic_cli.extras import missing_extra


def configure(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    from trainer_svc.data.loader import CLI_FORMATS
    from trainer_svc.training.edge_export import FORMATS, QUANTIZATIONS

    p.description = (
        "Convert MODEL_VERSION (BASE/NAME for the latest, or BASE/NAME/VERSION) into OUTPUT/model.tflite (or "
        "model.onnx) with labels.json, labels.txt and preprocessing.json (the input the model expects and how to "
        "read its output) beside it. int8 quantization calibrates on images of --calibration DATA, read as "
        "tfic train reads its data."
    )
    p.add_argument("model", metavar="MODEL_VERSION", help="BASE/NAME (latest version) or BASE/NAME/VERSION")
    p.add_argument("--format", dest="export_format", choices=FORMATS, default="tflite", help="default: tflite")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder to write into (created if missing)")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none", help="tflite only (default: none, float32)")
    p.add_argument("--calibration", metavar="DATA", help="int8: calibration images, e.g. the training data")
    p.add_argument("--calibration-format", choices=CLI_FORMATS, help="DATA's format (default: inferred)")
    p.add_argument("--calibration-image-root", help="folder a .lst's paths are relative to")
    p.add_argument("--attribute-names", help="an augmented manifest's image and label attributes")
    p.add_argument(
        "--calibration-images",
        type=int,
        default=200,
        help="at most this many images, seeded and spread over the classes (default: %(default)s)",
    )
    p.add_argument("--s3-endpoint-url", help="an S3-compatible server for s3:// calibration data")
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from trainer_svc.data.loader import load_source
    from trainer_svc.data.manifest import parse_attribute_names
    from trainer_svc.service.s3 import S3Options, fetch
    from trainer_svc.training.edge_export import export_model

    if args.quantize == "int8" and not args.calibration:
        raise InvalidArgument(
            "--quantize int8 needs --calibration DATA (images like those it will see: the training data)"
        )
    if args.calibration and args.quantize != "int8":
        raise InvalidArgument("--calibration is for --quantize int8")
    source = None
    cache = args.output / ".calibration.s3"
    try:
        if args.calibration:
            names = parse_attribute_names(args.attribute_names)
            data, root = fetch(
                args.calibration,
                args.calibration_image_root,
                args.calibration_format,
                names,
                cache,
                S3Options(args.s3_endpoint_url),
            )
            source = load_source(
                data, args.calibration_format, root, check_classes=False, label_format="auto", attribute_names=names
            )
        try:
            result = export_model(
                args.model, args.output, args.export_format, args.quantize, source, args.calibration_images
            )
        except ModuleNotFoundError as exc:  # tf2onnx: the onnx extra
            error = missing_extra("onnx", exc)
            raise exc if error is None else error from exc
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(
        json.dumps(
            {
                "model": str(result.model),
                "bytes": result.bytes,
                "format": result.format,
                "quantization": result.quantization,
                "calibration_images": result.calibration_images,
                "preprocessing": str(result.sidecar),
                "labels": [str(p) for p in result.labels],
            }
        )
    )
    return 0
