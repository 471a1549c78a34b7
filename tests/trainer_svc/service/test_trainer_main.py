"""``tfic serve trainer`` flags and environment variables → the settings object."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tfic.errors import InvalidArgument
from trainer_svc.main import add_arguments, settings_from_args
from trainer_svc.service.settings import TrainerSettings


def _settings(argv: list[str]) -> TrainerSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("TFIC_TRAINER_DATA_ROOTS", f"{a},{b}")
    monkeypatch.setenv("TFIC_TRAINER_MAX_CONCURRENT_JOBS", "2")
    monkeypatch.setenv("TFIC_TRAINER_AUTH_TOKEN", "t0ken")
    monkeypatch.setenv("TFIC_MODEL_BASE_PATH", str(tmp_path / "models"))
    settings = _settings([])
    assert settings.port == 8600
    assert settings.metrics_port == 9101
    assert settings.data_roots == (a, b)
    assert settings.max_concurrent_jobs == 2
    assert settings.auth_token == "t0ken"
    assert settings.model_base_path == tmp_path / "models"
    # Flags replace the environment's roots instead of adding to them.
    assert _settings(["--data-root", str(b)]).data_roots == (b,)
    assert _settings(["--metrics-port", "-1"]).metrics_port is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-concurrent-jobs", "-1"], "--max-concurrent-jobs must be 0 or more"),
        (["--max-attempts", "0"], "--max-attempts must be at least 1"),
        (["--data-root", "/no/such/folder"], "--data-root /no/such/folder is not a folder"),
    ],
)
def test_bad_settings_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _settings(argv)
