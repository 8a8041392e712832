"""The local Hub's HTTP side: a ThreadingHTTPServer that tracks its keep-alive connections
(so a stopped HubServer really drops them) and the request handler that dispatches every
method to HubServer._handle.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from hub_store import HubError, _json

if TYPE_CHECKING:
    from hubserver import HubServer


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, hub: HubServer):
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every answer has a length
    server: _HTTPServer
    query: dict[str, list[str]]

    def log_message(self, format, *args) -> None:
        pass  # keep test output clean: HubServer.request_log has the same information

    def read_body(self) -> bytes:
        # httpx2 always sends Content-Length: no chunked request bodies to decode.
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        hub = self.server.hub
        try:
            status, headers, payload = hub._handle(self)
        except HubError as error:
            status, headers, payload = error.response()
        except Exception as error:  # a server bug: make it visible to the client, not a hang
            status, headers, payload = _json({"error": f"test hub crashed: {error!r}"}, 500)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        with hub._lock:
            hub.request_log.append((self.command, self.path, status))

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


# ---------------------------------------------------------------------------------------------
# pytest fixtures
