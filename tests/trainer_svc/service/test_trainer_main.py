"""``tfic serve trainer`` flags and environment variables → the settings object."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tfic.errors import InvalidArgument
from tfic.settings import add_arguments, from_args
from trainer_svc.main import SETTINGS
from trainer_svc.service.settings import TrainerSettings


def _settings(argv: list[str], environ: dict[str, str] | None = None) -> TrainerSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SETTINGS)
    return from_args(TrainerSettings, parser.parse_args(argv), environ or {})


def test_defaults_and_environment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    environ = {
        "TFIC_TRAINER_DATA_ROOTS": f"{a},{b}",
        "TFIC_TRAINER_MAX_CONCURRENT_JOBS": "2",
        "TFIC_TRAINER_AUTH_TOKEN": "t0ken",
        "TFIC_MODEL_BASE_PATH": str(tmp_path / "models"),
    }
    settings = _settings([], environ)
    assert settings.port == 8600
    assert settings.metrics_port == 9101
    assert settings.data_roots == (a, b)
    assert settings.max_concurrent_jobs == 2
    assert settings.auth_token == "t0ken"
    assert settings.model_base_path == tmp_path / "models"
    assert settings.state_dir == Path("tfic-trainer-state").resolve()
    # Flags replace the environment's roots instead of adding to them, and add up among themselves.
    assert _settings(["--data-root", str(b)], environ).data_roots == (b,)
    assert _settings(["--data-root", str(b), "--data-root", str(a)], environ).data_roots == (b, a)
    assert _settings(["--metrics-port", "-1"]).metrics_port is None
    assert _settings([], {"TFIC_TRAINER_METRICS_PORT": "-1"}).metrics_port is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-concurrent-jobs", "-1"], "argument --max-concurrent-jobs: must be at least 0, got -1"),
        (["--max-attempts", "0"], "argument --max-attempts: must be at least 1, got 0"),
    ],
)
def test_bad_flags_are_refused_by_the_parser(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _settings(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_data_root_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="--data-root /no/such/folder is not a folder"):
        _settings(["--data-root", "/no/such/folder"])
    with pytest.raises(
        InvalidArgument,
        match=r"--data-root /no/such/folder is not a folder \(--data-root was set by TFIC_TRAINER_DATA_ROOTS\)",
    ):
        _settings([], {"TFIC_TRAINER_DATA_ROOTS": "/no/such/folder"})
