"""Serve the hub with uvicorn: in a background thread (demo, tests) or in the foreground."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from flip.ports import free_port


class BackgroundServer:
    """A uvicorn server running any ASGI `app` in a daemon thread until `stop()`."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(
            app, host=host, port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="flip-hub", daemon=True)

    @property
    def url(self) -> str:
        """The hub's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        """Start serving and wait until the socket accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to finish and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
