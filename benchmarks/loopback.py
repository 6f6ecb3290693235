"""A client of a server on this machine's loopback, shared by the serving benchmark and its tests:
a free port to start the server on, and a GET read as JSON."""

from __future__ import annotations

import http.client
import json
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 10.0) -> dict | None:
    """``GET http://127.0.0.1:port/path`` as JSON, or ``None`` while nothing answers there."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    except OSError:
        return None
