"""The ASGI app: ``POST /predict``, ``GET /healthz``, ``GET /metadata`` and the page at ``/``
(:func:`build_app`).

Every refusal is a JSON ``{"error": "one line"}`` with a 4xx status, and leaves the process as it
was: bad bytes never reach the batch (they are decoded first, in a thread of their own), and an
image that fails inside a batch answers its own request only (:meth:`ServedModel.predict`).
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from csrseg.errors import CsrsegError
from csrseg.serve.batcher import Batcher
from csrseg.serve.model import ServedModel
from csrseg.serve.schema import overlay_png, prediction_json
from csrseg.serve.uploads import ClientGone, RequestError, decode_image, read_upload

logger = logging.getLogger(__name__)

QUERY = ("score_thr", "tile", "overlap", "classes", "format")  # what /predict's query string may hold
FORMATS = ("json", "png")


def error(status: int, message: str) -> JSONResponse:
    """The one shape of every refusal."""
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def build_app(model: ServedModel) -> Starlette:
    """The app serving ``model``; its batcher starts with the first request and stops at shutdown."""
    batcher = Batcher(model.predict, max_batch=model.options.max_batch, max_wait_ms=model.options.max_wait_ms)
    page = resources.files("csrseg.serve").joinpath("page", "index.html").read_text(encoding="utf-8")

    async def predict(request: Request) -> Response:
        try:
            settings, output = request_settings(model, request)
            data = await read_upload(request, max_bytes=model.options.max_bytes)
            image = await run_in_threadpool(decode_image, data, max_pixels=model.options.max_pixels)
        except RequestError as exc:
            return error(exc.status, exc.message)
        except ClientGone:  # nobody is listening; the next request is served as usual
            logger.info("a client left during its upload")
            return Response(status_code=400)
        try:
            instances = await batcher.submit((image, settings))
        except Exception as exc:  # this image's own failure (its batch's others were answered)
            return error(500, f"prediction failed: {type(exc).__name__}: {exc}")
        if output == "png":
            body = await run_in_threadpool(overlay_png, image, instances, model.class_names)
            return Response(body, media_type="image/png", headers={"X-Instances": str(len(instances))})
        return JSONResponse(await run_in_threadpool(prediction_json, image, instances, settings.score_thr))

    async def healthz(request: Request) -> JSONResponse:
        stats = batcher.stats
        return JSONResponse(dict(status="ok", pid=os.getpid(), queued=batcher.queued, answered=stats.items,
                                 batches=stats.batches, largest_batch=stats.largest))

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(model.metadata))  # the first call hashes the model file

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        await batcher.stop()

    app = Starlette(
        routes=[Route("/", index), Route("/healthz", healthz), Route("/metadata", metadata),
                Route("/predict", predict, methods=["POST"])],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.model, app.state.batcher = model, batcher
    return app


def request_settings(model: ServedModel, request: Request):
    """``(RequestSettings, format)`` of a request's query string; :class:`RequestError` 400 for a
    parameter that is unknown or out of range."""
    query = request.query_params
    unknown = sorted(set(query) - set(QUERY))
    if unknown:
        raise RequestError(400, f"unknown query parameter {', '.join(unknown)} (known: {', '.join(QUERY)})")
    output = query.get("format", "json")
    if output not in FORMATS:
        raise RequestError(400, f"format={output}: one of {', '.join(FORMATS)}")
    classes = query.get("classes")
    try:
        settings = model.settings(score_thr=number(query, "score_thr", float), tile=number(query, "tile", int),
                                  overlap=number(query, "overlap", float),
                                  classes=None if classes is None else [c.strip() for c in classes.split(",") if c.strip()])
    except CsrsegError as exc:
        raise RequestError(400, str(exc)) from None
    return settings, output


def number(query, name: str, kind: type):
    """A numeric query parameter, ``None`` when absent."""
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise RequestError(400, f"{name}={text}: expected {'an integer' if kind is int else 'a number'}") from None
