"""``tfic data``: make .lst and .rec files like MXNet's im2rec, convert back, and inspect any dataset."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_MAX_SKIPPED_SHOWN = 20


def configure(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> None:
    from trainer_svc.data.loader import CLI_FORMATS

    parser.description = "Prepare datasets the way MXNet's im2rec does (without MXNet), convert back, and inspect them."
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "make-lst",
        help="list ROOT/<class>/<image> into PREFIX.lst (or PREFIX_train/_val/_test.lst)",
        description=(
            "Write an image list (index<TAB>label<TAB>path) from a folder with one sub-folder per class. Class "
            "indices follow the sorted folder names; the names go to labels.json next to the lists, where the "
            ".lst and .rec readers find them. With --train-ratio below 1 the split is stratified per class."
        ),
    )
    p.add_argument("root", type=Path, help="folder with one sub-folder per class")
    p.add_argument("prefix", type=Path, help="output path prefix, e.g. out/flowers → out/flowers.lst")
    p.add_argument(
        "--no-recursive", dest="recursive", action="store_false", help="ignore images in nested class sub-folders"
    )
    p.add_argument(
        "--train-ratio",
        type=float,
        default=1.0,
        help="fraction of each class in the training list (default: %(default)s)",
    )
    p.add_argument(
        "--test-ratio", type=float, default=0.0, help="fraction of each class in the test list (default: %(default)s)"
    )
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false", help="keep sorted order (no shuffling)")
    p.add_argument("--seed", type=int, default=100, help="shuffling seed (default: %(default)s, as im2rec)")
    p.add_argument(
        "--exts",
        nargs="+",
        default=[".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"],
        help="image file extensions (default: %(default)s)",
    )
    p.set_defaults(handler=cmd_make_lst)

    p = sub.add_parser(
        "make-rec",
        help="pack the images of a .lst into a RecordIO .rec + .idx",
        description=(
            "Pack the images listed in LST into PREFIX.rec with a PREFIX.idx index, readable by MXNet and by tfic. "
            "Images that cannot be decoded are skipped and listed."
        ),
    )
    p.add_argument("lst", type=Path, help="the .lst file")
    p.add_argument("--image-root", type=Path, help="folder the .lst paths are relative to (default: the .lst's folder)")
    p.add_argument("--prefix", type=Path, help="output prefix (default: the .lst path without .lst)")
    p.add_argument(
        "--resize", type=int, default=0, help="scale the shorter side to this many pixels (default: 0, keep the size)"
    )
    p.add_argument(
        "--quality",
        type=int,
        default=95,
        help="JPEG quality 1-100, or PNG compression level 0-9 (default: %(default)s)",
    )
    p.add_argument(
        "--encoding",
        choices=(".jpg", ".png"),
        default=".jpg",
        help="image encoding inside the records (default: %(default)s)",
    )
    p.add_argument("--center-crop", action="store_true", help="crop to a centred square before resizing")
    p.add_argument("--pass-through", action="store_true", help="store the files' bytes unchanged (no re-encoding)")
    p.add_argument("--workers", type=int, default=4, help="encoding threads (default: %(default)s)")
    p.set_defaults(handler=cmd_make_rec)

    p = sub.add_parser(
        "make-tfrecord",
        help="pack any dataset into a TFRecord file of tf.train.Example (image/encoded, image/class/label)",
        description=(
            "Read DATA as training does (class folders, .lst, .rec, TFRecord or an augmented manifest) and write "
            "OUTPUT, a TFRecord file of tf.train.Example with image/encoded (the image's bytes, unchanged), "
            "image/class/label (one value, or several for multi-label data) and image/class/text, plus labels.json "
            "beside it. Images that cannot be decoded are skipped and listed."
        ),
    )
    p.add_argument("data", help="the dataset")
    p.add_argument("output", type=Path, help="the .tfrecord file to write")
    p.add_argument("--format", choices=CLI_FORMATS, help="DATA's format (default: inferred)")
    p.add_argument("--image-root", help="folder .lst paths are relative to (default: the .lst's folder)")
    p.add_argument("--workers", type=int, default=8, help="decoding threads for the check (default: %(default)s)")
    p.set_defaults(handler=cmd_make_tfrecord)

    p = sub.add_parser(
        "rec-to-folder",
        help="unpack a .rec into OUT/<class>/<id>.<ext>",
        description="Unpack a RecordIO file into class folders (names from labels.json next to the .rec, else 0..N-1).",
    )
    p.add_argument("rec", type=Path, help="the .rec file")
    p.add_argument("out", type=Path, help="an empty or new output folder")
    p.set_defaults(handler=cmd_rec_to_folder)

    p = sub.add_parser(
        "rec-to-lst",
        help="unpack a .rec into OUT/images/ + OUT/<name>.lst",
        description="Unpack a RecordIO file into image files and a .lst (keeps multi-label records).",
    )
    p.add_argument("rec", type=Path, help="the .rec file")
    p.add_argument("out", type=Path, help="an empty or new output folder")
    p.set_defaults(handler=cmd_rec_to_lst)

    p = sub.add_parser(
        "inspect",
        help="load any dataset and print the images per class and what was skipped",
        description=(
            "Load PATH (class folders, .lst, .rec or TFRecord files; a glob for TFRecords) with the same checks as "
            "training, then print the number of images per class and the files that were skipped."
        ),
    )
    p.add_argument("path", help="dataset path")
    p.add_argument("--format", choices=CLI_FORMATS, help="format (default: inferred)")
    p.add_argument("--image-root", help="folder .lst paths are relative to (default: the .lst's folder)")
    p.add_argument("--decode", action="store_true", help="also decode every image and report the corrupt ones")
    p.add_argument("--workers", type=int, default=8, help="decoding threads for --decode (default: %(default)s)")
    p.add_argument(
        "--allow-missing-classes", action="store_true", help="accept lists where some classes have no images"
    )
    p.set_defaults(handler=cmd_inspect)


def cmd_make_lst(args: argparse.Namespace) -> int:
    from trainer_svc.data.im2rec import make_lst

    result = make_lst(
        args.root,
        args.prefix,
        recursive=args.recursive,
        train_ratio=args.train_ratio,
        test_ratio=args.test_ratio,
        shuffle=args.shuffle,
        seed=args.seed,
        exts=args.exts,
    )
    for name, path in result.lists.items():
        print(f"wrote {path}: {result.counts[name]} images")
    print(f"wrote {result.names_file}: {len(result.class_names)} classes ({_short(result.class_names)})")
    _print_skipped([(s.key, s.reason) for s in result.skipped], "not listed")
    return 0


def cmd_make_rec(args: argparse.Namespace) -> int:
    from trainer_svc.data.im2rec import make_rec

    result = make_rec(
        args.lst,
        args.image_root,
        args.prefix,
        resize=args.resize,
        quality=args.quality,
        encoding=args.encoding,
        center_crop=args.center_crop,
        pass_through=args.pass_through,
        workers=args.workers,
    )
    print(f"wrote {' and '.join(str(p) for p in result.outputs)}: {result.written} records")
    _print_skipped([(s.key, s.reason) for s in result.skipped], "not packed")
    return 0


def cmd_make_tfrecord(args: argparse.Namespace) -> int:
    import json

    from trainer_svc.data.loader import load_source, scan
    from trainer_svc.data.tfrecord import write_tfrecord

    source = scan(
        load_source(args.data, args.format, args.image_root, check_classes=False, label_format="auto"),
        workers=args.workers,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    items = ((source.read(s), s.labels) for s in source.samples)
    # Multi-label examples are named by labels.json alone: image/class/text holds one name per example.
    written = write_tfrecord(args.output, items, None if source.multi_label else source.class_names)
    names = args.output.parent / "labels.json"
    names.write_text(json.dumps({"labels": list(source.class_names)}) + "\n")
    print(f"wrote {args.output}: {written} records; {names}: {len(source.class_names)} classes")
    _print_skipped([(s.key, s.reason) for s in source.skipped], "not packed")
    return 0


def cmd_rec_to_folder(args: argparse.Namespace) -> int:
    from trainer_svc.data.im2rec import rec_to_folder

    result = rec_to_folder(args.rec, args.out)
    print(f"wrote {result.written} images into {args.out}")
    _print_skipped([(s.key, s.reason) for s in result.skipped], "not written")
    return 0


def cmd_rec_to_lst(args: argparse.Namespace) -> int:
    from trainer_svc.data.im2rec import rec_to_lst

    result = rec_to_lst(args.rec, args.out)
    print(f"wrote {result.outputs[0]} ({result.written} images) and {result.outputs[1]}")
    _print_skipped([(s.key, s.reason) for s in result.skipped], "not written")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from trainer_svc.data.loader import load_source, scan

    source = load_source(args.path, args.format, args.image_root, check_classes=not args.allow_missing_classes)
    if args.decode:
        source = scan(source, workers=args.workers)
    print(source.description)
    if source.multi_label:
        print("multi-label: yes (training needs one label per image)")
    counts = Counter(label for s in source.samples for label in s.labels)
    width = max(len(name) for name in source.class_names)
    for index, name in enumerate(source.class_names):
        print(f"  {index:>4}  {name:<{width}}  {counts.get(index, 0)}")
    _print_skipped([(s.key, s.reason) for s in source.skipped], "skipped")
    return 0


def _print_skipped(skipped: list[tuple[str, str]], verb: str) -> None:
    if not skipped:
        return
    print(f"{len(skipped)} file{'s' if len(skipped) != 1 else ''} {verb}:")
    for key, reason in skipped[:_MAX_SKIPPED_SHOWN]:
        print(f"  {key}: {reason}")
    if len(skipped) > _MAX_SKIPPED_SHOWN:
        print(f"  ... and {len(skipped) - _MAX_SKIPPED_SHOWN} more")


def _short(names: tuple[str, ...]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
