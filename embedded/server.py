"""An embedded AWS endpoint: moto's server in a thread of this process, counting the requests it serves."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server


class RequestCounter:
    """Counts requests by operation (X-Amz-Target, Action or the REST path), thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.log: list[str] = []  # operations in the order the server received them

    def __call__(self, app: Callable[..., Any]) -> Callable[..., Any]:
        def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if not environ.get("PATH_INFO", "").startswith("/moto-api"):
                operation = environ.get("HTTP_X_AMZ_TARGET") or environ.get("QUERY_STRING", "") or environ["PATH_INFO"]
                request = f"{environ['REQUEST_METHOD']} {operation}"
                with self._lock:
                    self.counts[request] += 1
                    self.log.append(request)
            return app(environ, start_response)

        return counting

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.log.clear()


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """The request counter keeps what matters; a log line per request would drown the drill."""


@contextmanager
def embedded_aws() -> Iterator[tuple[str, RequestCounter]]:
    """Serve moto on a free loopback port; yields its endpoint URL and the request counter."""
    counter = RequestCounter()
    server = make_server("127.0.0.1", 0, counter(DomainDispatcherApplication(create_backend_app)), threaded=True,
                         request_handler=_QuietRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="embedded-aws", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", counter
    finally:
        server.shutdown()
        thread.join(timeout=5)
