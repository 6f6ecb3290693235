"""Running the app under uvicorn: one process, or ``workers`` processes each with its own model
(:func:`prepare`, then :meth:`Prepared.run`).

The model is loaded (or, for several workers, checked by one load) before uvicorn starts, and the
address is tried first, so that a bad checkpoint or a taken port is csrseg's one-line error, not a
worker's traceback in a restart loop.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from csrseg.errors import CsrsegError
from csrseg.serve.extra import require_serve_extra
from csrseg.serve.options import ServeOptions

OPTIONS_ENV = "CSRSEG_SERVE_OPTIONS"  # how the parent hands its options to each worker process
WORKERS_ENV = "CSRSEG_SERVE_WORKERS"


@dataclass
class Prepared:
    """A server ready to run: its options, where it listens, and the model it loaded (for one worker)."""

    options: ServeOptions
    host: str
    port: int
    workers: int
    model: object  # ServedModel: the one the single process serves, or the check load for several workers
    log_level: str = "info"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def describe(self) -> str:
        """One line: what is served where."""
        meta = self.model.metadata()
        return (f"serving {meta['model']['file']} ({meta['model']['format']}, {len(meta['classes'])} classes, "
                f"{meta['model']['precision']}) at {self.url} with {self.workers} worker(s), batches of up to "
                f"{self.options.max_batch}: the page at /, POST /predict, GET /metadata, GET /healthz")

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM)."""
        import uvicorn

        if self.workers == 1:
            from csrseg.serve.service import build_app

            uvicorn.run(build_app(self.model), host=self.host, port=self.port, log_level=self.log_level)
            return
        self.model = None  # each worker loads its own; this process only supervises
        os.environ[OPTIONS_ENV] = self.options.to_json()
        os.environ[WORKERS_ENV] = str(self.workers)
        uvicorn.run("csrseg.serve.server:worker_app", factory=True, host=self.host, port=self.port,
                    workers=self.workers, log_level=self.log_level)


def prepare(options: ServeOptions, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
            log_level: str = "info") -> Prepared:
    """Check everything a server needs (the extra, the options, the address, the model) and load the model."""
    require_serve_extra()
    options.check()
    if not 1 <= port <= 65535:
        raise CsrsegError(f"--port {port}: must be from 1 to 65535")
    if workers < 1:
        raise CsrsegError(f"--workers {workers}: must be at least 1")
    check_address(host, port, workers=workers)
    from csrseg.serve.model import ServedModel

    return Prepared(options, host, port, workers, ServedModel.load(options), log_level)


def check_address(host: str, port: int, *, workers: int = 1) -> None:
    """A one-line :class:`CsrsegError` when ``host:port`` cannot be listened on (taken, or not this machine's).

    Tried as uvicorn will bind it: one process serves through asyncio, which binds every address
    ``host`` resolves to (``localhost`` may be ``::1`` and ``127.0.0.1``), so each is tried; with
    ``workers`` processes uvicorn binds one socket to ``host`` itself (IPv6 where it holds a ``:``)."""
    if workers > 1:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        _probe(host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CsrsegError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        _probe(host, port, family, kind, proto, address)


def _probe(host: str, port: int, family: int, kind: int, proto: int, address: tuple) -> None:
    """Bind a socket to ``address`` as the server will (then let it go), or say in one line why not."""
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            if family == socket.AF_INET6:  # as asyncio binds: the IPv6 socket apart from the IPv4 one
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        raise CsrsegError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    except OSError as exc:
        where = f"{address[0]} port {port}" if address[0] != host else f"port {port}"
        raise CsrsegError(f"--host {host} --port {port}: cannot listen there ({where}: {exc.strerror})") from None


def worker_app():
    """The app of one ``--workers`` process (uvicorn's factory): its own model, a share of the cores."""
    options = ServeOptions.from_json(os.environ[OPTIONS_ENV])
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    if not os.environ.get("OMP_NUM_THREADS"):  # N workers on C cores: C/N threads each, not C each
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    from csrseg.serve.model import ServedModel
    from csrseg.serve.service import build_app

    return build_app(ServedModel.load(options))
