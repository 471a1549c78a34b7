"""The model repository: which versions are served, loading, warm-up and hot swaps.

A watcher polls the file system (or TensorFlow Serving's model config file) every
``poll_interval_seconds``. For each model, the version policy picks the *aspired* versions among
those on disk; then:

* an aspired version that is not loaded is loaded in a loader thread, warmed up with real
  inferences at every batch size its batcher will use, and only then marked AVAILABLE;
* a loaded version that is no longer aspired keeps serving until an aspired version is AVAILABLE
  (or the model has no versions on disk at all); it is then marked UNLOADING — new requests go
  to the newest AVAILABLE version — and released once its last in-flight request has finished;
* a version that fails to load is FAILED with its error (logged, counted in
  ``tfic_inference_model_loads_total{outcome="failure"}``) while the previous one keeps
  serving; it is retried when any of its files changes (a copy that landed ``saved_model.pb`` before the
  variables is retried when they arrive), and its status says so.

Fleet labels: when a model's folder holds ``version_labels.json`` (:mod:`tfic.version_labels`), the
versions it labels are the aspired ones (as a ``specific`` policy listing them would make them), requests
that name no version or label go to the ``stable`` version, and a ``canary`` version answers a share of
them (the file's ``canary_share``, else ``--canary-share``), counted deterministically per server. A
request waits for nothing when the stable label moves: the version that served as stable keeps answering
until the new one is AVAILABLE, and only then is it unloaded. Without the file, nothing of this applies.

An operator can unload a model or one version (:meth:`ModelRepository.unload`) without touching its files:
it is held out of the aspired set until :meth:`ModelRepository.load`, its status is END with the reason,
and requests for it get FAILED_PRECONDITION. Holds live in memory: a restarted server serves as the files say.

Requests hold a :class:`Lease` on the version they were routed to from routing to response, so a
swap never fails a request. All state lives on the event loop; only loading, warm-up, unloading
and file-system scans run in threads.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from inference_svc import costmodel, priority
from inference_svc.batcher import Batcher
from inference_svc.costmodel import CostCurve
from inference_svc.fleet import CanaryRouter, aspired_versions
from inference_svc.metrics import UNKNOWN_MODEL, Metrics
from inference_svc.modelconfig import (
    Fingerprint,
    ModelConfig,
    read_model_config,
    scan_base_path,
    version_fingerprints,
)
from inference_svc.runtime.base import Runtime, RuntimeFactory
from inference_svc.settings import BatchingSettings, Settings
from tfic import version_labels
from tfic.errors import FailedPrecondition, InvalidArgument, ModelNotFound, NotFound, TficError, Unavailable
from tfic.modeldir import PREPROCESSING_DEFINITION, ModelMetadata, read_metadata
from tfic.version_labels import VersionLabels

log = logging.getLogger(__name__)

_MAX_ERROR = 2000
# Said in the version's status (ListModels, GetModel, GetModelStatus), so whoever reads the error knows what
# brings the version back.
RETRY_NOTE = " (retried when any file of the version changes)"


class VersionState(enum.Enum):
    LOADING = "loading"
    AVAILABLE = "available"
    UNLOADING = "unloading"
    END = "end"
    FAILED = "failed"


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: VersionState
    error: str = ""
    metadata: ModelMetadata | None = None
    version_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelStatus:
    name: str
    versions: tuple[VersionStatus, ...]


@dataclass(eq=False)
class ServedVersion:
    """One version of one model, from LOADING to END."""

    model: str
    version: int
    path: Path
    fingerprint: Fingerprint
    state: VersionState = VersionState.LOADING
    error: str = ""
    metadata: ModelMetadata | None = None
    runtime: Runtime | None = None
    batcher: Batcher | None = None
    leases: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)


class Lease:
    """Keeps a version loaded while a request uses it: ``with repository.acquire(...) as version:``."""

    __slots__ = ("version",)

    def __init__(self, version: ServedVersion) -> None:
        self.version = version
        version.leases += 1
        version.drained.clear()

    def __enter__(self) -> ServedVersion:
        return self.version

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.version.leases -= 1
        if self.version.leases == 0:
            self.version.drained.set()


@dataclass(eq=False)
class _Model:
    config: ModelConfig
    on_disk: dict[int, Fingerprint] = field(default_factory=dict)
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    removed: bool = False
    fleet: VersionLabels | None = None  # version_labels.json, when the model's folder has one
    router: CanaryRouter = field(default_factory=CanaryRouter)
    held: dict[int | None, str] = field(default_factory=dict)  # operator unloads: version (None: all) → reason
    ended: dict[int, str] = field(default_factory=dict)  # versions an operator unloaded → reason (status END)

    def labels(self) -> Mapping[str, int]:
        return self.fleet.labels if self.fleet is not None else self.config.version_labels


class ModelRepository:
    def __init__(
        self,
        settings: Settings,
        runtime_factory: RuntimeFactory,
        metrics: Metrics | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._factory = runtime_factory
        self._metrics = metrics
        self._on_change = on_change
        self._models: dict[str, _Model] = {}
        self._loader = ThreadPoolExecutor(
            max_workers=settings.load_threads, thread_name_prefix="tfic-load", initializer=priority.lower_current_thread
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._config_key: tuple[int, int] | None = None
        self._configs: list[ModelConfig] = []
        self._closed = False
        self._settled = asyncio.Event()  # set on every state change; waiters re-check and clear

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Scan once (loads start in the background) and keep watching."""
        await self.poll()
        self._watcher = asyncio.create_task(self._watch(), name="tfic-model-watcher")

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._settings.poll_interval_seconds)  # the polling period itself
            try:
                await self.poll()
            except Exception:
                log.exception("model repository poll failed; retrying in %.1f s", self._settings.poll_interval_seconds)

    async def poll(self) -> None:
        """One scan of the file system and the reconciliation that follows."""
        if self._closed:
            return
        scanned = await asyncio.to_thread(self._scan)
        names = set()
        for config, on_disk, labels in scanned:
            names.add(config.name)
            model = self._models.get(config.name)
            if model is None:
                model = self._models[config.name] = _Model(config)
                log.info("serving model %s from %s (%s)", config.name, config.base_path, config.policy)
            model.config = config
            model.on_disk = on_disk
            model.removed = False
            self._take_labels(model, labels)
            for version in [v for v in model.ended if v not in on_disk]:
                del model.ended[version]
        for name, model in list(self._models.items()):
            if name not in names:
                model.removed = True
        for model in list(self._models.values()):
            self._reconcile(model)

    def _take_labels(self, model: _Model, labels: VersionLabels | InvalidArgument | None) -> None:
        if isinstance(labels, InvalidArgument):
            if model.fleet is not None:
                log.error("%s; %s keeps its previous labels %s", labels.message, model.config.name, model.fleet.labels)
            return
        if labels == model.fleet:
            return
        name = model.config.name
        if labels is None:
            log.info("%s has no %s any more: serving by its version policy", name, version_labels.FILE_NAME)
        else:
            log.info("%s version labels: %s (canary share %s)", name, dict(labels.labels), labels.canary_share)
            stable = labels.stable
            if stable is None or stable not in model.on_disk:
                log.warning(
                    "%s: the stable label names %s, which is not on disk; the version policy's versions are "
                    "served as well",
                    name,
                    "no version" if stable is None else f"version {stable}",
                )
        model.fleet = labels

    def _scan(self) -> list[tuple[ModelConfig, dict[int, Fingerprint], VersionLabels | InvalidArgument | None]]:
        settings = self._settings
        if settings.model_config_file is not None:
            path = settings.model_config_file
            try:
                st = path.stat()
                key = (st.st_mtime_ns, st.st_size)
                if key != self._config_key:
                    self._configs = read_model_config(path)
                    self._config_key = key
            except (OSError, InvalidArgument) as exc:
                if self._config_key != (-1, -1):
                    log.error("model config %s not (re)loaded: %s; keeping the previous one", path, exc)
                self._config_key = (-1, -1)
            configs = self._configs
        else:
            assert settings.model_base_path is not None
            configs = scan_base_path(settings.model_base_path, settings.version_policy, settings.model_name)
        return [(config, version_fingerprints(config.base_path), _read_labels(config.base_path)) for config in configs]

    async def close(self) -> None:
        """Stop watching and unload everything (after the in-flight requests finish)."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        for model in self._models.values():
            model.removed = True
            for served in list(model.versions.values()):
                if served.state is VersionState.AVAILABLE:
                    self._spawn(self._unload(model, served))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._loader.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------- routing
    def acquire(self, name: str, version: int | None = None, label: str = "") -> Lease:
        """Route a request: a specific version, a labelled one, or the default (stable/canary, else newest)."""
        model = self._models.get(name)
        if model is None or model.removed:
            served = ", ".join(sorted(n for n, m in self._models.items() if not m.removed)) or "none"
            raise ModelNotFound(f"model {name!r} is not served here (served: {served})", model=name)
        if None in model.held:
            raise FailedPrecondition(
                f"model {name!r} is unloaded ({model.held[None]}); load it again to serve it", model=name
            )
        if label:
            if version is not None:
                raise InvalidArgument("set either a model version or a version label, not both", model=name)
            labelled = model.labels().get(label)
            if labelled is None:
                raise NotFound(f"model {name!r} has no version label {label!r}", model=name, version_label=label)
            version = labelled
        if version is not None:
            found = model.versions.get(version)
            if (found is None or found.state is not VersionState.AVAILABLE) and version in model.held:
                raise FailedPrecondition(
                    f"model {name!r} version {version} is unloaded ({model.held[version]}); load it again to serve it",
                    model=name,
                    version=version,
                )
            if found is None:
                raise NotFound(f"model {name!r} has no version {version} loaded", model=name, version=version)
            if found.state is not VersionState.AVAILABLE:
                raise Unavailable(
                    f"model {name!r} version {version} is {found.state.value}", model=name, version=version
                )
            return Lease(found)
        available = {s.version: s for s in model.versions.values() if s.state is VersionState.AVAILABLE}
        if not available:
            failed = [s for s in model.versions.values() if s.state is VersionState.FAILED]
            detail = f"; version {failed[-1].version} failed to load: {failed[-1].error}" if failed else ""
            raise Unavailable(f"model {name!r} has no version available yet{detail}", model=name)
        if model.fleet is None:
            return Lease(available[max(available)])
        return Lease(available[model.router.choose(model.fleet, available, self._settings.canary_share)])

    def metric_label(self, name: str) -> str:
        """``name`` if this repository serves it, else a fixed placeholder (bounded label values)."""
        return name if name in self._models else UNKNOWN_MODEL

    def models(self) -> list[ModelStatus]:
        return [self._status(m) for name, m in sorted(self._models.items()) if not m.removed]

    def model(self, name: str) -> ModelStatus:
        model = self._models.get(name)
        if model is None or model.removed:
            raise ModelNotFound(f"model {name!r} is not served here", model=name)
        return self._status(model)

    def available(self, name: str | None = None) -> bool:
        """Whether ``name`` (or any model) has a version taking traffic.

        Without a name (the server's readiness), a model an operator unloaded counts too: its requests get a
        precise FAILED_PRECONDITION, and the server must stay in its load balancer's endpoints, or the
        ``LoadModel`` that brings the model back could not reach it.
        """
        if name is None:
            models = list(self._models.values())
            if any(m.held and not m.removed for m in models):
                return True
        else:
            found = self._models.get(name)
            models = [found] if found is not None else []
        return any(s.state is VersionState.AVAILABLE for m in models for s in m.versions.values())

    def batchers(self, name: str) -> list[Batcher]:
        model = self._models.get(name)
        return [s.batcher for s in model.versions.values() if s.batcher is not None] if model else []

    def _status(self, model: _Model) -> ModelStatus:
        labels: dict[int, list[str]] = {}
        for label, version in sorted(model.labels().items()):
            labels.setdefault(version, []).append(label)
        statuses = {
            v: VersionStatus(v, VersionState.END, f"unloaded: {reason}", None, tuple(labels.get(v, ())))
            for v, reason in model.ended.items()
        }
        for v, s in model.versions.items():
            statuses[v] = VersionStatus(v, s.state, s.error, s.metadata, tuple(labels.get(v, ())))
        return ModelStatus(model.config.name, tuple(statuses[v] for v in sorted(statuses)))

    # ----------------------------------------------------------------- operator control
    async def unload(self, name: str, version: int | None = None, reason: str = "") -> ModelStatus:
        """Stop serving ``name`` (or one version) without touching its files; returns once it is unloaded.

        In-flight requests finish first. Idempotent. The hold lasts until :meth:`load` (or a restart).
        """
        model = self._get(name)
        if version is not None and version not in model.versions and version not in model.on_disk:
            raise NotFound(f"model {name!r} has no version {version}", model=name, version=version)
        model.held[version] = reason.strip() or "by an operator"
        log.info("operator unload of %s%s: %s", name, "" if version is None else f" version {version}", reason)
        self._reconcile(model)
        self._changed()
        await self._settle(model)
        return self._status(model)

    async def load(self, name: str, version: int | None = None) -> ModelStatus:
        """Undo :meth:`unload` (of the model: every hold; of a version: that one); returns once loading is over."""
        model = self._get(name)
        if version is None:
            model.held.clear()
            model.ended.clear()
        else:
            if None in model.held:
                raise FailedPrecondition(
                    f"model {name!r} is unloaded as a whole; load the model, not one version", model=name
                )
            if version not in model.on_disk:
                raise NotFound(f"model {name!r} has no version {version} on disk", model=name, version=version)
            model.held.pop(version, None)
            model.ended.pop(version, None)
            if version not in self._aspired(model):
                raise FailedPrecondition(
                    f"model {name!r} version {version} is not among the versions its policy "
                    f"({model.config.policy}) or labels serve",
                    model=name,
                    version=version,
                )
        log.info("operator load of %s%s", name, "" if version is None else f" version {version}")
        self._reconcile(model)
        self._changed()
        await self._settle(model)
        return self._status(model)

    def _get(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None or model.removed:
            raise ModelNotFound(f"model {name!r} is not served here", model=name)
        return model

    async def _settle(self, model: _Model) -> None:
        """Until no version of ``model`` is loading or unloading (the caller's deadline bounds the wait)."""
        busy = (VersionState.LOADING, VersionState.UNLOADING)
        while any(s.state in busy for s in model.versions.values()):
            self._settled.clear()
            await self._settled.wait()

    # ----------------------------------------------------------------- reconciliation
    def _reconcile(self, model: _Model) -> None:
        if self._closed:
            return
        aspired = self._aspired(model)
        for version in sorted(aspired):
            served = model.versions.get(version)
            fingerprint = model.on_disk[version]
            if served is None or (served.state is VersionState.FAILED and served.fingerprint != fingerprint):
                served = ServedVersion(model.config.name, version, model.config.base_path / str(version), fingerprint)
                model.versions[version] = served
                self._spawn(self._load(model, served))
        stable = model.fleet.stable if model.fleet is not None else None
        if stable is not None and stable in aspired:
            # The old versions keep answering until the version the stable label names can.
            ready = stable in model.versions and model.versions[stable].state is VersionState.AVAILABLE
        else:
            ready = any(s.state is VersionState.AVAILABLE for v, s in model.versions.items() if v in aspired)
        for version, served in list(model.versions.items()):
            if version in aspired:
                continue
            if served.state is VersionState.FAILED:
                del model.versions[version]
            elif served.state is VersionState.AVAILABLE and (
                ready or not aspired or version in model.held or None in model.held
            ):
                served.state = VersionState.UNLOADING  # now, so no later reconciliation spawns a second unload
                self._spawn(self._unload(model, served))
        if model.removed and not model.versions and self._models.get(model.config.name) is model:
            del self._models[model.config.name]
            log.info("model %s is no longer served", model.config.name)

    def _aspired(self, model: _Model) -> set[int]:
        if model.removed or None in model.held:
            return set()
        policy = model.config.policy.select(list(model.on_disk))
        aspired = set(policy) if model.fleet is None else aspired_versions(model.fleet, model.on_disk, policy)
        return aspired - set(model.held)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, model: _Model, served: ServedVersion) -> None:
        name, version = served.model, served.version
        batching = self._settings.batching_for(name)
        log.info("loading %s version %d from %s", name, version, served.path)
        loop = asyncio.get_running_loop()
        self._changed()
        try:
            metadata, runtime, cost = await loop.run_in_executor(self._loader, self._load_blocking, served, batching)
        except Exception as exc:
            message = str(exc) if isinstance(exc, TficError) else f"{type(exc).__name__}: {exc}"
            served.state = VersionState.FAILED
            served.error = message[: _MAX_ERROR - len(RETRY_NOTE)] + RETRY_NOTE
            log.error("failed to load %s version %d: %s", name, version, served.error)
            if self._metrics is not None:
                self._metrics.model_loads.labels(name, "failure").inc()
        else:
            if self._closed:
                await loop.run_in_executor(None, runtime.close)
                return
            served.metadata = metadata
            served.runtime = runtime
            served.batcher = Batcher(name, runtime.predict, batching, metadata.image_shape, self._metrics, cost)
            served.state = VersionState.AVAILABLE
            log.info("%s version %d is available", name, version)
            if self._metrics is not None:
                self._metrics.model_loads.labels(name, "success").inc()
        self._reconcile(model)
        self._changed()

    def _load_blocking(
        self, served: ServedVersion, batching: BatchingSettings
    ) -> tuple[ModelMetadata, Runtime, CostCurve | None]:
        metadata = read_metadata(served.path)
        if metadata.image_shape[2] != 3:
            raise InvalidArgument(f"model takes {metadata.image_shape[2]} channels; tfic serves RGB (3) models")
        warn_definition(served.model, served.version, metadata.preprocessing.definition)
        runtime = self._factory(served.model, served.version, served.path, metadata)
        try:
            cost = warm_up(runtime, metadata, batching, self._settings.warmup_iterations)
        except BaseException:
            runtime.close()
            raise
        priority.lower_runtime_threads()  # the runtime's pools exist once it has run
        if cost is not None:
            log.info("%s version %d costs per batch: %s", served.model, served.version, cost.describe())
        return metadata, runtime, cost

    async def _unload(self, model: _Model, served: ServedVersion) -> None:
        served.state = VersionState.UNLOADING
        log.info("unloading %s version %d after %d in-flight request(s)", served.model, served.version, served.leases)
        self._changed()
        if served.leases:
            await served.drained.wait()
        if served.batcher is not None:
            await served.batcher.close()
        if served.runtime is not None:
            await asyncio.get_running_loop().run_in_executor(None, served.runtime.close)
        served.state = VersionState.END
        served.batcher = None
        served.runtime = None
        if model.versions.get(served.version) is served:
            del model.versions[served.version]
        reason = model.held.get(served.version, model.held.get(None))
        if reason is not None:
            model.ended[served.version] = reason
        log.info("unloaded %s version %d", served.model, served.version)
        self._reconcile(model)
        self._changed()

    def _changed(self) -> None:
        self._settled.set()
        if self._metrics is not None:
            for name, model in self._models.items():
                count = sum(s.state is VersionState.AVAILABLE for s in model.versions.values())
                self._metrics.loaded_versions.labels(name).set(count)
        if self._on_change is not None:
            self._on_change()


def _read_labels(base: Path) -> VersionLabels | InvalidArgument | None:
    try:
        return version_labels.read(base)
    except InvalidArgument as exc:
        return exc


def warm_up(runtime: Runtime, metadata: ModelMetadata, batching: BatchingSettings, iterations: int) -> CostCurve | None:
    """Real inferences at every batch size the batcher will use, so no request pays first-call costs;
    then, with adaptive batching, the version's cost curve (:mod:`inference_svc.costmodel`)."""
    height, width, _ = metadata.image_shape
    rng = np.random.default_rng(0)
    batches = {}
    for size in batching.batch_sizes:
        # uint8, what decoded images are; float32 (TensorFlow Serving's Predict) once per size too.
        images = rng.integers(0, 256, (size, height, width, 3), dtype=np.uint8)
        batches[size] = images
        for pixels in [images] * max(1, iterations) + [images.astype(np.float32)]:
            probabilities = runtime.predict(pixels)
            columns = len(metadata.columns)
            if probabilities.shape != (size, columns):
                raise InvalidArgument(
                    f"model returned probabilities of shape {probabilities.shape} for {size} images; "
                    f"its metadata ({metadata.output}, {metadata.num_classes} labels) needs {columns} columns"
                )
    if not (batching.enabled and batching.adaptive):
        return None
    return costmodel.measure(runtime.predict, batches, beside=batching.num_batch_threads > 1)


def warn_definition(model: str, version: int, definition: int) -> bool:
    """Log a warning for a version trained with another preprocessing definition; True if it was."""
    if definition == PREPROCESSING_DEFINITION:
        return False
    if definition < PREPROCESSING_DEFINITION:
        log.warning(
            "%s version %d was trained with preprocessing definition %d (TensorFlow's fast IDCT, no DCT "
            "scaling, tf.image.resize); this service decodes with definition %d, so its answers differ "
            "from what the model saw in training (max |dp| 0.13, 12 of 341 labels on clothing-small in "
            "bench/parity.py); retrain to get identical answers everywhere (docs/inference.md, Preprocessing)",
            model,
            version,
            definition,
            PREPROCESSING_DEFINITION,
        )
    else:
        log.warning(
            "%s version %d was trained with preprocessing definition %d, newer than this service's %d; "
            "upgrade the service for identical answers",
            model,
            version,
            definition,
            PREPROCESSING_DEFINITION,
        )
    return True
