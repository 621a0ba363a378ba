"""A live uvicorn server on 127.0.0.1 in a background thread, for the tests of ``g2c serve``
(the server API, the assistant API and the web page): clients are tested against a real
server, never a mock."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``LiveServer(app)`` serves the ASGI ``app`` on a free loopback port until ``stop()``;
    ``url`` is its base URL. Fails the test when the server does not start within 10 s."""

    def __init__(self, app: Any) -> None:
        self.app = app
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the server did not start"

    @property
    def scheduler(self) -> Any:
        """The g2c scheduler behind the app."""
        return self.app.state.g2c.scheduler

    def health(self) -> dict:
        return httpx.get(self.url + "/health").json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
