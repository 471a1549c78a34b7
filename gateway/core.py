"""The gateway's transport-free core: which model answers, whether one is loaded, whether to take traffic.

Neither HTTP nor gRPC is imported here: the routes call this, and this calls an
:class:`~gateway.upstream.Inference`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.coalesce import Coalescer
from gateway.settings import GatewaySettings
from gateway.upstream import Call, Inference, ModelRef, Prediction
from tfic.errors import InvalidArgument, TficError, Unavailable

# How long the list of served models is trusted when resolving the only model (no default configured).
MODELS_TTL_SECONDS = 5.0
READY_TIMEOUT_SECONDS = 2.0


class Gateway:
    """One per app. The inference client is attached when the app starts (it needs the serving event loop)."""

    def __init__(
        self,
        settings: GatewaySettings,
        inference: Inference | None = None,
        *,
        observe_coalesced: Callable[[int], None] = lambda images: None,
    ) -> None:
        self.settings = settings
        self._observe_coalesced = observe_coalesced
        self._inference: Inference | None = None
        self._coalescer: Coalescer | None = None
        self.attach(inference)
        self.draining = False  # set on SIGTERM: /readyz answers 503 while in-flight requests finish
        self._models: tuple[float, tuple[str, ...]] | None = None

    @property
    def inference(self) -> Inference:
        if self._inference is None:
            raise Unavailable("the gateway is starting")
        return self._inference

    def attach(self, inference: Inference | None) -> None:
        self._inference = inference
        self._coalescer = None
        if inference is not None and self.settings.coalesce_max_images > 1:
            self._coalescer = Coalescer(
                inference,
                max_images=self.settings.coalesce_max_images,
                max_in_flight=self.settings.coalesce_max_in_flight,
                observe=self._observe_coalesced,
            )

    async def detach(self) -> None:
        """Stop taking calls and wait for the coalesced calls already sent."""
        coalescer = self._coalescer
        self.attach(None)
        if coalescer is not None:
            await coalescer.close()

    async def _served_models(self, call: Call) -> tuple[str, ...]:
        now = time.monotonic()
        if self._models is None or self._models[0] < now:
            names = tuple(m.name for m in await self.inference.list_models(call))
            self._models = (now + MODELS_TTL_SECONDS, names)
        return self._models[1]

    async def resolve(self, name: str | None, call: Call) -> str:
        """The model for a request: the one it names, else the configured default, else the only one served."""
        if name:
            return name
        if self.settings.default_model:
            return self.settings.default_model
        names = await self._served_models(call)
        if len(names) == 1:
            return names[0]
        if not names:
            raise Unavailable("the inference service serves no model yet")
        raise InvalidArgument(
            "no model given and several are served ("
            + ", ".join(sorted(names))
            + "): name one with the X-Tfic-Model header or /models/{name}/invocations, or start the gateway "
            "with --default-model"
        )

    async def classify(self, model: ModelRef, images: Sequence[bytes], top_k: int, call: Call) -> Prediction:
        coalescer = self._coalescer
        if coalescer is not None and len(images) == 1:
            return await coalescer.classify(model, images[0], top_k, call)
        return await self.inference.classify(model, images, top_k, call)

    async def model_loaded(self, call: Call) -> bool:
        """SageMaker's /ping: the default model (or, with none configured, any model) has an available version."""
        try:
            if self.settings.default_model:
                return bool((await self.inference.get_model(self.settings.default_model, call)).available())
            return any(m.available() for m in await self.inference.list_models(call))
        except TficError:
            return False

    async def ready(self) -> bool:
        if self.draining or self._inference is None:
            return False
        return await self._inference.ready(READY_TIMEOUT_SECONDS)
