"""A PostgreSQL LISTEN connection for the event loop, with barriers.

A :class:`Listener` holds one connection that listens on some channels and hands every
notification to a callback as it arrives. Its :meth:`Listener.barrier` answers the question
a cache kept up to date by notifications must answer before it is read: *have I been told
of everything committed so far?* PostgreSQL delivers the notifications of a channel in the
order their transactions committed (a transaction still committing holds back the ones
queued after it), and a session hears its own. So a barrier sends ``pg_notify`` on a
channel of this connection's own; when that notification comes back, every notification
committed before the barrier was asked for has been handed to the callback.

Barriers are shared: one is in flight at a time; whoever asks while it is in flight waits
for the next one, sent as soon as the first returns (a barrier sent before the question
was asked would not answer it). Under load many checks share one round trip.

The barrier's transaction assigns a transaction id and writes a commit record;
``synchronous_commit`` is off for this session, so it never waits for the WAL to reach the
disk (a barrier needs no durability).

If the connection breaks, a barrier is not back within ``BARRIER_TIMEOUT_SECONDS``, or the
server reports an error, the listener is *lost*: pending barriers fail with
:class:`ListenerLost`, ``on_lost`` is called (whatever was learnt from notifications may have
missed some), and a new connection is tried every ``RECONNECT_SECONDS`` until one listens
again. Between the two, :attr:`Listener.listening` is false and barriers fail at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from psycopg import AsyncConnection, OperationalError
from psycopg import Error as PsycopgError
from psycopg import sql as pg_sql
from psycopg.pq import ExecStatus
from sqlalchemy.engine import URL

from tallybook.db.hot import conninfo_of
from tallybook.db.pq_held import send_query

BARRIER_TIMEOUT_SECONDS: Final = 2.0
RECONNECT_SECONDS: Final = 1.0
CONNECT_TIMEOUT_SECONDS: Final = 10

_log = logging.getLogger(__name__)
_FATAL_ERROR: Final = ExecStatus.FATAL_ERROR


class ListenerLost(Exception):
    """The listener is not listening (its connection broke or is being made again)."""


class Listener:
    """One connection listening on ``channels``; see the module's docstring.

    ``on_notify(channel, payload)`` is called on the event loop for each notification, in
    commit order. ``on_lost()`` is called when the connection is lost (and when it is closed),
    ``on_barrier()`` when a barrier is sent.
    """

    def __init__(
        self,
        url: str | URL,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_lost: Callable[[], None],
        on_barrier: Callable[[], object] | None = None,
    ) -> None:
        self._conninfo = conninfo_of(url)
        self._channels = tuple(channels)
        self._on_notify = on_notify
        self._on_lost = on_lost
        self._on_barrier = on_barrier
        self._connection: AsyncConnection[Any] | None = None
        self._socket = -1
        self._sync_channel = ""
        self._closed = True
        self._reconnect: asyncio.Task[None] | None = None
        #: The barrier sent and not back yet: its token and the futures it completes (one per
        #: caller: a caller cancelled while awaiting cancels its own future, nobody else's).
        self._in_flight: tuple[str, list[asyncio.Future[None]]] | None = None
        #: Whoever asked while a barrier was in flight: completed by the next one.
        self._next: list[asyncio.Future[None]] = []
        self._tokens = 0
        self._result_pending = False
        self._timeout: asyncio.TimerHandle | None = None
        #: Barriers sent since opened (tests and metrics read it).
        self.barriers_sent = 0

    @property
    def listening(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        """Listen now if the database answers, else keep trying in the background."""
        self._closed = False
        try:
            await self._listen()
        except (PsycopgError, OSError) as error:
            _log.warning("listener: cannot listen yet (%s); retrying", error)
            self._schedule_reconnect()

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        await self._drop(ListenerLost("the listener is closed"))

    def barrier(self) -> asyncio.Future[None]:
        """A future done once every notification committed before this call has been handed
        to ``on_notify`` (or failed with :class:`ListenerLost`)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._connection is None:
            waiter.set_exception(ListenerLost("the listener is not listening"))
        elif self._in_flight is None and not self._result_pending:
            self._send([waiter])
        else:
            self._next.append(waiter)
        return waiter

    # -- The connection ------------------------------------------------------------------

    async def _listen(self) -> None:
        connection: AsyncConnection[Any] = await AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options="-c synchronous_commit=off -c statement_timeout=0",
        )
        try:
            sync_channel = f"tb_barrier_{connection.pgconn.backend_pid}"
            for channel in (*self._channels, sync_channel):
                await connection.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(channel)))
        except BaseException:
            await connection.close()
            raise
        if self._closed:
            await connection.close()
            return
        self._connection = connection
        self._sync_channel = sync_channel
        self._socket = connection.pgconn.socket
        asyncio.get_running_loop().add_reader(self._socket, self._on_readable)
        self._on_readable()  # anything that came with the LISTEN replies

    def _schedule_reconnect(self) -> None:
        if self._closed or (self._reconnect is not None and not self._reconnect.done()):
            return
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        while not self._closed and self._connection is None:
            await asyncio.sleep(RECONNECT_SECONDS)
            try:
                await self._listen()
            except (PsycopgError, OSError) as error:
                _log.warning("listener: cannot listen yet (%s); retrying", error)

    async def _drop(self, error: BaseException) -> None:
        connection = self._forget(error)
        if connection is not None:
            await connection.close()

    def _forget(self, error: BaseException) -> AsyncConnection[Any] | None:
        """Stop using the connection: fail the barriers waiting on it, tell ``on_lost``."""
        connection = self._connection
        if connection is not None:
            asyncio.get_running_loop().remove_reader(self._socket)
        self._connection = None
        self._result_pending = False
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        for waiter in (*(self._in_flight[1] if self._in_flight else ()), *self._next):
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved here: nobody may be awaiting it any more
        self._in_flight = None
        self._next = []
        self._on_lost()
        return connection

    def _lose(self, reason: str) -> None:
        _log.warning("listener: connection lost (%s); reconnecting", reason)
        connection = self._forget(ListenerLost(reason))
        if connection is not None:
            closing = asyncio.get_running_loop().create_task(connection.close())
            closing.add_done_callback(lambda task: task.exception())
        self._schedule_reconnect()

    # -- Barriers ------------------------------------------------------------------------

    def _send(self, waiters: list[asyncio.Future[None]]) -> None:
        connection = self._connection
        assert connection is not None
        self._tokens += 1
        token = str(self._tokens)
        query = b"SELECT pg_notify('%s', '%s')" % (
            self._sync_channel.encode(),
            token.encode(),
        )
        pgconn = connection.pgconn
        self._in_flight = (token, waiters)
        try:
            send_query(pgconn, query)  # holding the GIL (see db.pq_held)
            while pgconn.flush():  # a few bytes: the socket takes them at once
                pass
        except OperationalError as error:
            self._lose(f"sending a barrier: {error}")
            return
        self._result_pending = True
        self.barriers_sent += 1
        if self._on_barrier is not None:
            self._on_barrier()
        self._timeout = asyncio.get_running_loop().call_later(
            BARRIER_TIMEOUT_SECONDS, self._timed_out, token
        )

    def _timed_out(self, token: str) -> None:
        if (self._in_flight is not None and self._in_flight[0] == token) or (
            self._result_pending and str(self._tokens) == token
        ):
            self._lose(f"barrier {token} not back in {BARRIER_TIMEOUT_SECONDS} s")

    def _on_readable(self) -> None:
        connection = self._connection
        if connection is None:
            return
        pgconn = connection.pgconn
        try:
            pgconn.consume_input()
        except OperationalError as error:
            self._lose(str(error))
            return
        while self._result_pending and not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                self._result_pending = False
            elif result.status == _FATAL_ERROR:
                message = (result.error_message or b"").decode(errors="replace").strip()
                self._lose(f"barrier failed: {message}")
                return
        back = False
        while True:
            notify = pgconn.notifies()
            if notify is None:
                break
            channel = notify.relname.decode()
            payload = notify.extra.decode()
            if channel == self._sync_channel:
                if self._in_flight is not None and self._in_flight[0] == payload:
                    back = True
                continue
            try:
                self._on_notify(channel, payload)
            except Exception:  # what was learnt may now be wrong: start again from nothing
                _log.exception("listener: on_notify failed on %r", payload)
                self._lose("on_notify failed")
                return
        if back:
            self._barrier_back()
        if self._timeout is not None and self._in_flight is None and not self._result_pending:
            self._timeout.cancel()
            self._timeout = None
        # The next barrier leaves once the last one is back and its result read.
        if self._next and self._in_flight is None and not self._result_pending:
            following, self._next = self._next, []
            self._send(following)

    def _barrier_back(self) -> None:
        assert self._in_flight is not None
        waiters = self._in_flight[1]
        self._in_flight = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
