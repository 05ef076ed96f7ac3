"""The HTTP API under uvicorn on 127.0.0.1, in a thread of this process."""

from __future__ import annotations

import threading
import time
from typing import Any


class ApiServer:
    """The HTTP API (functions.api.app) under uvicorn on 127.0.0.1 in a thread, on a port
    bound before it starts (port 0: a free one). ``with ApiServer() as api: api.url``."""

    def __init__(self, app: Any = None, *, port: int = 0, log_level: str = "warning") -> None:
        self._app = app
        self._port = port
        self._log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def __enter__(self) -> ApiServer:
        import socket

        import uvicorn

        from functions.api.server import uvicorn_options

        app = self._app
        if app is None:
            from functions.api.app import create_app

            app = create_app()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level=self._log_level,
            access_log=False,
            **uvicorn_options(),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                raise RuntimeError("the API server did not stop")
