"""The ``tfic`` CLI as users and scripts call it: exit codes, one-line errors, JSON outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfic_cli.main import main


def test_help_for_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tfic_cli", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--model-base-path" in out and "--learning_rate" in out and "--mini_batch_size" in out
    for command in (["evaluate"], ["predict"], ["data", "make-lst"], ["data", "make-rec"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0


def test_bad_hyperparameter_is_a_one_line_error_with_nonzero_exit(tmp_path: Path, digits_dir: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfic_cli",
            "train",
            str(digits_dir),
            "--model-base-path",
            str(tmp_path),
            "--model-name",
            "m",
            "--learning_rate",
            "-3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tfic train: error:")]
    assert errors == ["tfic train: error: learning_rate=-3 is out of range: must be > 0 and <= 10"]
    assert not (tmp_path / "m").exists()


def test_missing_data_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(tmp_path / "nope"), "--model-base-path", str(tmp_path), "--model-name", "m"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_evaluate_predict(tmp_path: Path, digits_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"model": "small_cnn", "image_shape": "3,16,16", "epochs": "5", "learning_rate": "0.01"}))
    code = main(
        [
            "train",
            str(digits_dir),
            "--model-base-path",
            str(tmp_path / "models"),
            "--model-name",
            "digits",
            "--hyperparameters",
            str(hp),
            "--epochs",
            "1",
            "--metrics-log",
            str(tmp_path / "log.jsonl"),
        ]
    )
    assert code == 0
    assert f"wrote digits version 1 to {tmp_path / 'models' / 'digits' / '1'}" in capsys.readouterr().out
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1]  # the flag overrode the file's 5

    code = main(
        [
            "evaluate",
            str(tmp_path / "models" / "digits"),
            str(digits_dir),
            "--json",
            "--confusion-png",
            str(tmp_path / "cm.png"),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"accuracy", "top_k_accuracy", "per_class", "confusion_matrix"} <= set(report)
    assert sum(map(sum, report["confusion_matrix"])) == 400
    assert set(report["per_class"]) == {f"digit_{i}" for i in range(10)}
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    image = sorted((digits_dir / "digit_4").glob("*.png"))[0]
    assert main(["predict", str(tmp_path / "models" / "digits" / "1"), str(image)]) == 0
    single = json.loads(capsys.readouterr().out)
    assert set(single) == {"probabilities", "labels", "predicted_label"}
    assert len(single["probabilities"]) == 10 and single["predicted_label"] in single["labels"]

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((digits_dir / "digit_1").glob("*.png"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["predict", str(tmp_path / "models" / "digits"), str(folder), "--top-k", "2"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4
    broken = next(x for x in lines if x["source"].endswith("broken.png"))
    assert "error" in broken
    good = [x for x in lines if "error" not in x]
    assert all(len(x["probabilities"]) == 2 and x["probabilities"][0] >= x["probabilities"][1] for x in good)


def _run_blocking(argv: list[str], blocked: tuple[str, ...] = ()) -> tuple[int, str, set[str]]:
    """``tfic ARGV`` in a fresh interpreter where ``blocked`` modules cannot be imported (as when their extra
    is not installed): the exit code, stderr, and the top-level packages it imported."""
    script = (
        "import json, sys\n"
        f"for name in {list(blocked)!r}: sys.modules[name] = None\n"
        "from tfic_cli.main import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)
    modules = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    return proc.returncode, proc.stderr, modules


def test_only_the_command_that_runs_is_imported() -> None:
    code, _, modules = _run_blocking(["--help"])
    assert code == 0
    assert modules.isdisjoint({"trainer_svc", "inference_svc", "gateway", "tfic_demo", "grpc", "numpy"})
    code, _, modules = _run_blocking(["serve", "gateway", "--help"])
    assert code == 0 and "gateway" in modules
    assert modules.isdisjoint({"tensorflow", "trainer_svc", "inference_svc", "numpy", "PIL"})
    code, _, modules = _run_blocking(["serve", "inference", "--help"])
    assert code == 0 and "inference_svc" in modules
    assert modules.isdisjoint({"tensorflow", "trainer_svc", "gateway", "starlette"})


def test_a_missing_extra_is_named_instead_of_a_traceback(tmp_path: Path, digits_dir: Path) -> None:
    code, err, _ = _run_blocking(["serve", "gateway", "--help"], blocked=("uvicorn",))
    assert code == 1
    assert err.strip().splitlines() == [
        "tfic serve: error: the package 'uvicorn' is not installed; it comes with pip install 'tfic[gateway]'"
    ]
    argv = ["train", str(digits_dir), "--model-base-path", str(tmp_path), "--model-name", "m"]
    code, err, _ = _run_blocking(argv, blocked=("tensorflow",))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "tfic train: error: the package 'tensorflow' is not installed; it comes with pip install 'tfic[trainer]'"
    )


def test_flags_are_never_abbreviated_and_typos_get_a_suggestion(
    tmp_path: Path, digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", str(digits_dir), "--model-base-path", str(tmp_path), "--model-name", "m"]
    for typo, meant in (("--epoch", "--epochs"), ("--learning_rat", "--learning_rate")):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, typo, "1"])
        assert exit_info.value.code == 2
        assert f"unrecognized arguments: {typo} 1; {typo}: did you mean {meant}?" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_help_shows_real_defaults_and_what_refused_names_accept() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tfic_cli", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "(default: None)" not in out
    flat = " ".join(out.split())
    assert "--resize V MXNet pre-crop resize (default only — tfic resizes whole images" in flat
    assert "--kv_store V, --kv-store V MXNet distribution mode (default only — use --strategy multi-worker" in flat


def test_evaluate_writes_files_only_where_asked_and_predict_takes_options_anywhere(
    trained_model: Path,
    digits_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(trained_model), str(digits_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "confusion_png" not in report and list(tmp_path.iterdir()) == []
    assert main(["evaluate", str(trained_model), str(digits_dir), "--output-dir", "out"]) == 0
    assert "confusion matrix saved to out/confusion_matrix.png" in capsys.readouterr().out
    assert (tmp_path / "out" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["images"] == 400

    images = [str(p) for p in sorted((digits_dir / "digit_3").glob("*.png"))[:2]]
    assert main(["predict", str(trained_model), "--top-k", "2", images[0], images[1]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(x["labels"]) for x in lines] == [2, 2] and [x["source"] for x in lines] == images
