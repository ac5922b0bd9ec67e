"""Run localstripe (a stateful fake Stripe server, GPL-3.0) on 127.0.0.1 and a free port.

Test-only and always a separate process: tallybook never imports localstripe. Its own launcher
binds every interface and saves its store to /tmp after each write; this one binds loopback,
keeps the store in memory, and prints the port on its first line.
"""

from __future__ import annotations

import socket

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    # Every worker runs its own server: never share (or write) the on-disk store.
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    web.run_app(server.app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
