"""Fixtures for the training tests: a small slice of the real digits."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def few_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images per class: enough to move the weights, small enough for a quick test."""
    from tfic_demo.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("few"), per_class=12)
