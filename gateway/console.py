"""The web console (``--console``, on by default): plain HTML/JS/CSS pages served by the gateway itself.

Pages (docs/console.md): Try a model, Models, Jobs (with ``--trainer``), API docs. The pages call the gateway's
own API from the browser, so what they show is what a client gets: ``/models`` for the models and the
``application/x-image`` invocation routes for predictions. The Jobs page needs the Trainer, which only the
gateway can reach; its routes under ``/console/api/`` relay the Trainer's gRPC API as JSON
(:mod:`gateway.trainer_client`), the watch stream as JSON lines.

Auth: the pages, their static files and Swagger UI's are public (they hold no data); every call they make
(models, invocations, ``/console/api/``) needs the bearer token when ``--auth-token`` is set. The page asks
for the token once and keeps it in the tab's ``sessionStorage``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import render
from gateway.errors import classify, error_body
from gateway.settings import GatewaySettings
from gateway.trainer_client import TrainerClient
from tfic.errors import InvalidArgument, NotFound, TficError, Unavailable

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("console")
PREFIX = "/console/"
API_PREFIX = "/console/api/"
JSON = "application/json"
JSON_LINES = "application/x-ndjson"


def is_public(path: str) -> bool:
    """The console's pages and static files: public, as a login page is; its API is not."""
    return path in ("/", "/console") or (path.startswith(PREFIX) and not path.startswith(API_PREFIX))


def _swagger_ui_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


class Console:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.trainer: TrainerClient | None = None
        self._config = render.dumps(
            {
                "jobs": bool(settings.trainer),
                "auth": settings.auth_token is not None,
                "default_model": settings.default_model,
            }
        )

    def routes(self) -> list[BaseRoute]:
        get = ["GET"]
        routes: list[BaseRoute] = [
            Route("/", self.root, methods=get),
            Route("/console", self.root, methods=get),
            Route(PREFIX, self.index, methods=get),
            Route(f"{PREFIX}config.json", self.config, methods=get),
            Mount(f"{PREFIX}static", StaticFiles(directory=ASSETS), name="console-static"),
            Mount(f"{PREFIX}swagger-ui", StaticFiles(directory=_swagger_ui_dir()), name="swagger-ui"),
        ]
        if self.settings.trainer:
            routes += [
                Route(f"{API_PREFIX}jobs", self.list_jobs, methods=get),
                Route(f"{API_PREFIX}jobs/{{job}}", self.get_job, methods=get),
                Route(f"{API_PREFIX}jobs/{{job}}/stop", self.stop_job, methods=["POST"]),
                Route(f"{API_PREFIX}jobs/{{job}}/events", self.job_events, methods=get),
            ]
        else:  # a precise 404 that says what is missing, not the generic "no route"
            routes += [
                Route(f"{API_PREFIX}jobs", self.no_trainer, methods=get),
                Route(f"{API_PREFIX}jobs/{{path:path}}", self.no_trainer, methods=[*get, "POST"]),
            ]
        return routes

    async def no_trainer(self, request: Request) -> Response:
        raise NotFound(
            f"{request.url.path}: this gateway has no Trainer; start it with --trainer HOST:PORT "
            "(TFIC_GATEWAY_TRAINER) for the console's Jobs page and API"
        )

    def attach(self) -> None:
        """Open the Trainer channel (on the serving loop, as grpc.aio requires)."""
        if self.settings.trainer:
            self.trainer = TrainerClient(
                self.settings.trainer,
                timeout=self.settings.timeout_seconds,
                token=self.settings.trainer_auth_token,
                default_retry_after=self.settings.retry_after_seconds,
            )

    async def close(self) -> None:
        if self.trainer is not None:
            await self.trainer.close()
            self.trainer = None

    def _trainer(self) -> TrainerClient:
        if self.trainer is None:
            raise Unavailable("the gateway is starting; retry shortly")
        return self.trainer

    async def root(self, request: Request) -> Response:
        return RedirectResponse(PREFIX, status_code=307)

    async def index(self, request: Request) -> Response:
        return FileResponse(ASSETS / "index.html", media_type="text/html")

    async def config(self, request: Request) -> Response:
        return Response(self._config, media_type=JSON)

    async def list_jobs(self, request: Request) -> Response:
        token = request.query_params.get("page_token", "")
        return Response(render.dumps(await self._trainer().list_jobs(token)), media_type=JSON)

    async def get_job(self, request: Request) -> Response:
        return Response(render.dumps(await self._trainer().get_job(_job(request))), media_type=JSON)

    async def stop_job(self, request: Request) -> Response:
        return Response(render.dumps(await self._trainer().stop_job(_job(request))), media_type=JSON)

    async def job_events(self, request: Request) -> Response:
        """The job's events as JSON lines, ending when the job ends; an error after the first line is a last line."""
        trainer, job = self._trainer(), _job(request)
        await trainer.get_job(job)  # an unknown job is a 404 before the stream starts, not a broken stream

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for event in trainer.watch(job):
                    yield render.dumps(event) + b"\n"
            except TficError as exc:
                log.warning("watching job %s ended: %s", job, exc.message)
                http_status, status_name, message, reason = classify(exc)
                yield error_body(http_status, status_name, message, reason) + b"\n"

        return StreamingResponse(lines(), media_type=JSON_LINES, headers={"Cache-Control": "no-store"})


def _job(request: Request) -> str:
    job: str = request.path_params["job"].strip()
    if not job:
        raise InvalidArgument("give a job id or name")
    return job
