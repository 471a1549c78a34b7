"""Fixtures for the training tests: a small slice of the real digits, and transfer models trained once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_svc.training.transfer_runs import FROZEN_HP, RECIPE_HP, Trained, digest, run_transfer


@pytest.fixture(scope="session")
def few_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 images per class: enough to move the weights, small enough for a quick test."""
    from tfic_demo.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("few"), per_class=12)


def _shared(base: Path, few_digits: Path, hp: dict[str, str]) -> Iterator[Trained]:
    events: list[dict[str, Any]] = []
    result = run_transfer(few_digits, base, "shared", hp, events)
    assert result.path is not None
    trained = Trained(result.path, tuple(events))
    before = digest(trained.path)
    yield trained
    assert digest(trained.path) == before, f"a test changed the shared version {trained.path}; copy it first"


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory: pytest.TempPathFactory, few_digits: Path) -> Iterator[Trained]:
    """The default recipe (3 head epochs on cached features, 2 fine-tuning the backbone), trained once."""
    yield from _shared(tmp_path_factory.mktemp("recipe"), few_digits, RECIPE_HP)


@pytest.fixture(scope="session")
def frozen_run(tmp_path_factory: pytest.TempPathFactory, few_digits: Path) -> Iterator[Trained]:
    """The backbone frozen, 4 head epochs on cached features, the last one published; trained once."""
    yield from _shared(tmp_path_factory.mktemp("frozen"), few_digits, FROZEN_HP)
