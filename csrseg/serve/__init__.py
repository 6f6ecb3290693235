"""A trained model over HTTP: ``csrseg serve`` and, to mount in an app of your own, :func:`app`.

::

    from csrseg.serve import app
    asgi = app(weights="best.pt", max_batch=8)       # a Starlette app: uvicorn it, or mount it
    # fastapi_app.mount("/segment", asgi)

Needs the ``serve`` extra (``pip install 'csrseg[serve]'``); without it, a one-line error says so.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["app", "serve"]


def app(weights: str | Path | None = None, *, onnx: str | Path | None = None, openvino: str | Path | None = None,
        predictor=None, **options):
    """The ASGI app serving one model: a checkpoint (``weights``), an exported ONNX model (``onnx``,
    fp32 or INT8) or an OpenVINO IR (``openvino``), or a ``predictor`` already made. ``options``: the
    fields of :class:`~csrseg.serve.options.ServeOptions` (``score_thr``, ``tile``, ``overlap``,
    ``classes``, ``max_batch``, ``max_wait_ms``, ``max_bytes``, ``max_pixels``, ``device``,
    ``precision``, ``data``, ``compiled``)."""
    from csrseg.serve.extra import require_serve_extra

    require_serve_extra()
    from csrseg.serve.model import ServedModel
    from csrseg.serve.options import ServeOptions
    from csrseg.serve.service import build_app

    if "classes" in options:
        options["classes"] = tuple(options["classes"] or ())
    if predictor is not None:
        if weights or onnx or openvino:
            raise ValueError("give a predictor or a model file, not both")
        served = ServedModel(predictor, options=ServeOptions(**options).check(model_file=False))
    else:
        paths = {k: None if v is None else str(v) for k, v in dict(weights=weights, onnx=onnx, openvino=openvino).items()}
        served = ServedModel.load(ServeOptions(**paths, **options))
    return build_app(served)


def serve(weights: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          **options) -> None:
    """Serve a model until interrupted: what ``csrseg serve`` runs (:func:`~csrseg.serve.server.prepare`)."""
    from csrseg.serve.options import ServeOptions
    from csrseg.serve.server import prepare

    if weights is not None:
        options["weights"] = str(weights)
    prepare(ServeOptions(**options), host=host, port=port, workers=workers).run()
