from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from tfic.errors import InvalidDataset
from tfic_cli import data
from trainer_svc.data.recordio import read_rec


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="tfic data")
    data.configure(parser, argv)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_make_lst_make_rec_inspect(
    make_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_dataset({"cat": 3, "dog": 3})
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    prefix = tmp_path / "out" / "pets"

    assert _run("make-lst", str(root), str(prefix), "--train-ratio", "0.6", "--seed", "5") == 0
    out = capsys.readouterr().out
    assert f"wrote {prefix}_train.lst: 4 images" in out
    assert f"wrote {prefix}_val.lst: 3 images" in out
    assert "labels.json: 2 classes (cat, dog)" in out

    train_lst = Path(f"{prefix}_train.lst")
    assert _run("make-rec", str(train_lst), "--image-root", str(root), "--resize", "8") == 0
    out = capsys.readouterr().out
    rec = Path(f"{prefix}_train.rec")
    assert f"wrote {rec} and {prefix}_train.idx:" in out
    packed = read_rec(rec, check_classes=False)
    assert packed.class_names == ("cat", "dog")
    broken_in_train = "dog/broken.png" in train_lst.read_text()
    assert f": {4 - broken_in_train} records" in out
    assert len(packed.samples) == 4 - broken_in_train
    assert ("1 file not packed:\n  dog/broken.png: " in out) == broken_in_train

    assert _run("inspect", str(root), "--decode") == 0
    out = capsys.readouterr().out
    assert "7 images in 2 classes; 1 undecodable skipped, 6 left" in out
    assert "cat  3" in out and "dog  3" in out
    assert "1 file skipped:\n  dog/broken.png: data is not an image" in out

    assert _run("inspect", str(rec), "--allow-missing-classes") == 0
    assert f"RecordIO {rec}" in capsys.readouterr().out


def test_rec_conversions(make_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_dataset({"a": 2, "b": 2})
    assert _run("make-lst", str(root), str(tmp_path / "ds")) == 0
    assert _run("make-rec", str(tmp_path / "ds.lst"), "--image-root", str(root), "--pass-through") == 0
    capsys.readouterr()
    assert _run("rec-to-folder", str(tmp_path / "ds.rec"), str(tmp_path / "folders2")) == 0
    assert "wrote 4 images into" in capsys.readouterr().out
    assert sorted(p.parent.name for p in (tmp_path / "folders2").glob("*/*.png")) == ["a", "a", "b", "b"]
    assert _run("rec-to-lst", str(tmp_path / "ds.rec"), str(tmp_path / "lst2")) == 0
    assert "ds.lst (4 images)" in capsys.readouterr().out


def test_bad_input_raises_a_tfic_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lst"
    bad.write_text("0\t0\n")
    with pytest.raises(InvalidDataset, match="line 1: expected at least 3"):
        _run("make-rec", str(bad))


def test_help_texts_describe_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("make-lst", "make-rec", "inspect", "rec-to-folder", "rec-to-lst"):
        with pytest.raises(SystemExit) as info:
            _run(command, "--help")
        assert info.value.code == 0
        assert len(capsys.readouterr().out.splitlines()) > 5


def test_main_prints_one_line_and_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = pytest.importorskip("tfic_cli.main")
    assert main.main(["data", "inspect", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"tfic data: error: dataset {tmp_path / 'missing'} does not exist"


def test_make_tfrecord_packs_any_dataset_as_training_reads_it(
    make_dataset: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer_svc.data.loader import load_source

    root = make_dataset({"cat": 3, "dog": 2})
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    out = tmp_path / "packed" / "pets.tfrecord"
    assert _run("make-tfrecord", str(root), str(out)) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: 5 records" in printed and "broken.png" in printed
    packed = load_source(str(out))
    original = load_source(str(root))
    assert packed.class_names == ("cat", "dog")
    good = [s for s in original.samples if not s.key.endswith("broken.png")]
    assert [s.labels for s in packed.samples] == [s.labels for s in good]
    assert [packed.read(s) for s in packed.samples] == [original.read(s) for s in good]  # bytes unchanged

    # Several labels per image (a multi-label .lst) stay several image/class/label values.
    lst = tmp_path / "multi.lst"
    files = sorted(p.relative_to(root) for p in root.rglob("*.png") if p.name != "broken.png")
    labels = ["0", "0\t1"]  # class ids: one label, then two
    rows = [f"{i}\t{labels[i % 2]}\t{path}\n" for i, path in enumerate(files)]
    lst.write_text("".join(rows))
    (tmp_path / "labels.json").write_text('{"labels": ["indoor", "sunny"]}')
    multi = tmp_path / "multi" / "multi.tfrecord"
    assert _run("make-tfrecord", str(lst), str(multi), "--image-root", str(root)) == 0
    capsys.readouterr()
    samples = load_source(str(multi)).samples
    assert [s.labels for s in samples] == [(0,) if i % 2 == 0 else (0, 1) for i in range(len(files))]
    assert load_source(str(multi)).class_names == ("indoor", "sunny")


def test_format_choices_are_the_names_the_error_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tfic.errors import NotFound
    from trainer_svc.data.loader import FORMATS

    # Every name the "cannot tell the format" message offers is a valid --format: the reader, not argparse's
    # "invalid choice" (SystemExit), is what refuses a missing path.
    for name in FORMATS:
        with pytest.raises((NotFound, InvalidDataset)):
            _run("inspect", str(tmp_path / "nothing"), "--format", name)
