"""libpq's send calls made while holding the GIL, for the event loop's connections.

psycopg's C wrapper releases the GIL around ``PQsendQuery`` and ``PQsendQueryPrepared``. On
the event loop of a process that also runs Python on other threads (the API's ingestion on
its worker threads), each release lets such a thread take the GIL, and the event loop then
waits for it to give it back: up to the interpreter's switch interval, 5 ms. A sample
program with one busy thread measured ``send_query`` at 20 µs p50 and 8.6 ms p99 (a shorter
switch interval did not help: 5 ms p99 at 0.5 ms). The other calls the loop makes
(``consume_input``, ``is_busy``, ``get_result``, ``notifies``, ``flush``) keep the GIL.

These calls go to the same libpq that psycopg loaded (found in ``/proc/self/maps``, loaded
again through ``ctypes.PyDLL``, which never releases the GIL), on psycopg's ``PGconn``
pointer. On a non-blocking connection the call only writes to the socket, so holding the GIL
costs nothing. Where that libpq cannot be found for certain (not Linux, psycopg's pure-Python
implementation, two different libpq loaded, another version), :data:`HELD` is ``False`` and
psycopg's own calls are used.
"""

from __future__ import annotations

import ctypes
from typing import Final

from psycopg import OperationalError, pq
from psycopg.pq.abc import PGconn

_ParamValues = ctypes.c_char_p


def _libpq_path() -> str | None:
    """The one libpq mapped into this process, if exactly one is."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {
                line.split(None, 5)[5].strip()
                for line in maps
                if line.count(" ") >= 5 and "/libpq" in line and ".so" in line
            }
    except OSError:
        return None
    return paths.pop() if len(paths) == 1 else None


def _load() -> ctypes.PyDLL | None:
    if pq.__impl__ not in ("binary", "c"):
        return None
    path = _libpq_path()
    if path is None:
        return None
    try:
        library = ctypes.PyDLL(path)
        library.PQlibVersion.restype = ctypes.c_int
        if library.PQlibVersion() != pq.version():
            return None
        library.PQsendQuery.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        library.PQsendQuery.restype = ctypes.c_int
        library.PQsendQueryPrepared.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
        ]
        library.PQsendQueryPrepared.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return library


_LIBRARY: Final = _load()
#: Whether the sends below hold the GIL (else they are psycopg's).
HELD: Final = _LIBRARY is not None


def _pointer(pgconn: PGconn) -> int:
    pointer: int | None = pgconn.pgconn_ptr  # type: ignore[attr-defined]  # C and binary
    if not pointer:  # finished: libpq would take NULL for a connection and say nothing
        raise OperationalError("the connection is closed")
    return pointer


def _failed(pgconn: PGconn, what: str) -> OperationalError:
    message = (pgconn.error_message or b"").decode("utf-8", "replace").strip()
    return OperationalError(f"{what} failed: {message}")


def send_query(pgconn: PGconn, query: bytes) -> None:
    """``pgconn.send_query(query)``, holding the GIL."""
    if _LIBRARY is None:
        pgconn.send_query(query)
        return
    if not _LIBRARY.PQsendQuery(_pointer(pgconn), query):
        raise _failed(pgconn, "sending query")


def send_query_prepared(pgconn: PGconn, name: bytes, values: list[bytes | None]) -> None:
    """``pgconn.send_query_prepared(name, values)`` (text parameters, text results),
    holding the GIL."""
    if _LIBRARY is None:
        pgconn.send_query_prepared(name, values)
        return
    count = len(values)
    array = (_ParamValues * count)(*values) if count else None
    if not _LIBRARY.PQsendQueryPrepared(_pointer(pgconn), name, count, array, None, None, 0):
        raise _failed(pgconn, "sending prepared query")
