"""Fixtures: tiny real models exported once per session, real servers on port 0, and their stubs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc import aio

from inference_svc.server import InferenceServer
from tests.inference_svc.support import MODEL, SIZE, export_model, make_settings, publish_copy, wait_until


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``STORE/tiny/1`` (16×16, 3 classes) and ``STORE/other/1`` (a second model with other labels)."""
    store = tmp_path_factory.mktemp("store")
    export_model(store, MODEL, SIZE, seed=1)
    export_model(store, "other", SIZE, seed=2, labels=("a", "b"))
    return store


@pytest.fixture
def base_path(tmp_path: Path, model_store: Path) -> Path:
    """A fresh model base path holding ``tiny/1``."""
    base = tmp_path / "models"
    publish_copy(model_store / MODEL / "1", base / MODEL, 1)
    return base


@pytest.fixture
async def server(base_path: Path) -> AsyncIterator[InferenceServer]:
    srv = await InferenceServer(make_settings(base_path)).start()
    await wait_until(lambda: srv.repository.available(MODEL), what="tiny/1 to load")
    yield srv
    await srv.stop(grace=1.0)


@pytest.fixture
async def channel(server: InferenceServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch
