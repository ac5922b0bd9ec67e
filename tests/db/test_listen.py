"""The LISTEN connection (``db.listen``): notifications handed over in commit order, shared
barriers, and what happens when the connection is lost, fails or is closed; on PostgreSQL.

Every scenario runs on asyncio's own event loop and on uvloop (what ``tallybook serve`` runs).
Notifications come from other real connections; losses are real (``pg_terminate_backend``,
a relay that holds the server's answers back, a server that is not there). Waits are bounded
by ``WAIT_SECONDS`` as a safety net only: nothing here measures time.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql as pg_sql
from sqlalchemy.engine import URL, make_url

from tallybook.db import listen
from tallybook.db.hot import conninfo_of
from tallybook.db.listen import Listener, ListenerLost
from tests.fixtures.aio import Run
from tests.fixtures.databases import PG_ADMIN_URL, PgWorkerDatabase

#: The longest anything that must happen is waited for (a safety net, never a measure).
WAIT_SECONDS = 10.0
#: Short enough for a test to see a reconnection soon, long enough to be seen waiting.
RECONNECT_SECONDS = 0.05


@pytest.fixture
def url(pg_worker_database: PgWorkerDatabase) -> URL:
    """The worker's database (nothing here writes a table: no truncation needed)."""
    return make_url(pg_worker_database.url)


@pytest.fixture
def application_name() -> str:
    """The listener's ``application_name``: finds its backend in ``pg_stat_activity``."""
    return unique("tb_listener")


@pytest.fixture
def listener_url(url: URL, application_name: str) -> URL:
    return url.update_query_dict({"application_name": application_name})


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listen, "RECONNECT_SECONDS", RECONNECT_SECONDS)


def unique(prefix: str) -> str:
    """A name no other test (or worker, or run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Heard:
    """What a listener handed over: its notifications in order, and its losses."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.notices: list[tuple[str, str]] = []
        self.losses = 0
        #: Set by every loss (a test clears it to wait for the next one).
        self.lost = asyncio.Event()
        self._fail_on = fail_on

    def on_notify(self, channel: str, payload: str) -> None:
        self.notices.append((channel, payload))
        if payload == self._fail_on:
            raise RuntimeError(f"on_notify refuses {payload!r} (on purpose)")

    def on_lost(self) -> None:
        self.losses += 1
        self.lost.set()

    def payloads(self, channel: str) -> list[str]:
        return [payload for heard_on, payload in self.notices if heard_on == channel]

    async def next_loss(self) -> None:
        """Wait for a loss not seen yet. No task is made for the wait: the caller runs in
        the loop's turn after ``on_lost``, before the reconnection's first step."""
        async with asyncio.timeout(WAIT_SECONDS):
            await self.lost.wait()
        self.lost.clear()


@contextlib.asynccontextmanager
async def opened(url: str | URL, channels: Sequence[str], heard: Heard) -> AsyncIterator[Listener]:
    """A listener opened for the block, closed after it."""
    listener = Listener(url, channels, heard.on_notify, heard.on_lost)
    await listener.open()
    try:
        yield listener
    finally:
        await listener.close()


@contextlib.asynccontextmanager
async def connected(url: str | URL) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Another connection (autocommit: each statement commits on its own)."""
    connection = await psycopg.AsyncConnection.connect(conninfo_of(url), autocommit=True)
    async with connection:
        yield connection


async def notify(connection: psycopg.AsyncConnection[Any], channel: str, payload: str) -> None:
    await connection.execute("SELECT pg_notify(%s, %s)", (channel, payload))


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds (polled; fails after ``WAIT_SECONDS``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


async def backends(connection: psycopg.AsyncConnection[Any], application_name: str) -> list[int]:
    cursor = await connection.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
    )
    return [row[0] for row in await cursor.fetchall()]


async def no_backend_left(connection: psycopg.AsyncConnection[Any], application_name: str) -> None:
    """Wait until no backend of that name is left (one closed by its client ends soon after)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while await backends(connection, application_name):
        assert loop.time() < deadline, f"a backend of {application_name} is still there"
        await asyncio.sleep(0.005)


def backend_pid(listener: Listener) -> int:
    """The listener's backend (a private attribute: the test needs the very connection)."""
    connection = listener._connection
    assert connection is not None
    pid: int = connection.pgconn.backend_pid
    return pid


@contextlib.contextmanager
def blocking(url: str | URL) -> Iterator[psycopg.Connection[Any]]:
    """A synchronous connection: what it does, it does without letting the event loop run
    (so the listener cannot read its socket meanwhile)."""
    with psycopg.connect(conninfo_of(url), autocommit=True) as connection:
        yield connection


def terminate_and_wait(admin: psycopg.Connection[Any], pid: int) -> None:
    """End a backend and wait (blocking the loop) until it is gone."""
    assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    deadline = time.monotonic() + WAIT_SECONDS
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, f"backend {pid} never ended"
        time.sleep(0.005)


# Notifications and barriers ---------------------------------------------------------------


AWKWARD_PAYLOADS = [
    "plain",
    "",
    'it\'s "quoted"',
    "back\\slash \\\\",
    "new\nline\ttab",
    "ünïcödé ✓ 🧾",
    "x" * 7000,
]


def test_notifications_committed_before_a_barrier_have_been_handed_over(
    url: URL, run: Run[Any]
) -> None:
    """Committed in autocommit or in an explicit transaction, on channels named with any
    characters: each has reached ``on_notify``, as sent, when a later barrier completes;
    channels not listened to are not handed over."""
    plain, odd, other = unique("tb_plain"), unique('Odd "Chan" nel'), unique("tb_other")

    async def scenario() -> Heard:
        heard = Heard()
        async with opened(url, (plain, odd), heard) as listener, connected(url) as sender:
            assert listener.listening
            await listener.barrier()  # nothing sent yet: completes all the same
            assert heard.notices == []
            for payload in AWKWARD_PAYLOADS:
                await notify(sender, plain, payload)
            async with sender.transaction():
                await notify(sender, odd, "in a transaction")
                await notify(sender, other, "not listened to")
                await sender.execute(
                    pg_sql.SQL("NOTIFY {}, 'by NOTIFY'").format(pg_sql.Identifier(odd))
                )
            await listener.barrier()
            assert heard.losses == 0
        return heard

    heard = run(scenario())
    assert heard.notices == [
        *((plain, payload) for payload in AWKWARD_PAYLOADS),
        (odd, "in a transaction"),
        (odd, "by NOTIFY"),
    ]


def test_notifications_are_handed_over_in_commit_order(url: URL, run: Run[Any]) -> None:
    """The order is the order of the commits, not of the statements; hundreds in a row keep
    it."""
    channel = unique("tb_order")

    async def scenario() -> Heard:
        heard = Heard()
        async with (
            opened(url, (channel,), heard) as listener,
            connected(url) as first,
            connected(url) as second,
        ):
            async with first.transaction():
                await notify(first, channel, "first, sent first")
                async with second.transaction():
                    await notify(second, channel, "second, committed first")
                await notify(first, channel, "first, sent last")
            for n in range(300):
                await notify(second if n % 2 else first, channel, str(n))
            await listener.barrier()
        return heard

    heard = run(scenario())
    assert heard.payloads(channel) == [
        "second, committed first",
        "first, sent first",
        "first, sent last",
        *(str(n) for n in range(300)),
    ]


def test_a_notification_of_a_transaction_still_open_is_not_waited_for(
    url: URL, run: Run[Any]
) -> None:
    """A barrier answers for what was committed when it was asked: a transaction still open
    holds nothing back, and its notification arrives once it commits."""
    channel = unique("tb_open")

    async def scenario() -> None:
        heard = Heard()
        async with (
            opened(url, (channel,), heard) as listener,
            connected(url) as sender,
            connected(url) as other,
        ):
            async with other.transaction():
                await notify(other, channel, "committed later")
                await notify(sender, channel, "committed now")
                await listener.barrier()
                assert heard.payloads(channel) == ["committed now"]
            await listener.barrier()
            assert heard.payloads(channel) == ["committed now", "committed later"]

    run(scenario())


def test_barriers_asked_together_share_one_round_trip(url: URL, run: Run[Any]) -> None:
    """Fifty barriers asked in one turn of the loop: the first goes out at once, the others
    share the next one (sent when the first is back). Every one completes."""
    channel = unique("tb_shared")

    async def scenario() -> tuple[int, list[None]]:
        heard = Heard()
        async with opened(url, (channel,), heard) as listener, connected(url) as sender:
            await notify(sender, channel, "before")
            before = listener.barriers_sent
            barriers = [listener.barrier() for _ in range(50)]
            done = await asyncio.gather(*barriers)
            assert heard.payloads(channel) == ["before"]
            return listener.barriers_sent - before, done

    sent, done = run(scenario())
    assert sent == 2
    assert done == [None] * 50


def test_a_barrier_asked_while_one_is_in_flight_waits_for_the_next(url: URL, run: Run[Any]) -> None:
    """A barrier already sent cannot answer for a commit made after it was sent: whoever asks
    then waits for the next barrier. Here the first barrier is answered by the server (its
    reply waits on the socket) before the notification commits; the loop does not run in
    between, so the second is asked while the first is in flight."""
    channel = unique("tb_next")

    async def scenario() -> None:
        heard = Heard()
        async with opened(url, (channel,), heard) as listener:
            with blocking(url) as sender:
                before = listener.barriers_sent
                first = listener.barrier()
                socket_of_listener = listener._socket  # private: to wait for the reply
                readable, _, _ = select.select([socket_of_listener], [], [], WAIT_SECONDS)
                assert readable, "the first barrier was never answered"
                sender.execute("SELECT pg_notify(%s, 'after the first barrier')", (channel,))
                second = listener.barrier()
                assert second is not first
                assert listener.barriers_sent == before + 1  # the second waits its turn
            await second
            assert first.done() and first.exception() is None
            assert heard.payloads(channel) == ["after the first barrier"]
            assert listener.barriers_sent == before + 2

    run(scenario())


def test_commits_and_barriers_from_many_tasks(url: URL, run: Run[Any]) -> None:
    """Tasks commit a notification then ask for a barrier, over and over, all at once:
    whether a task's barrier went out alone or was shared, its own notification has been
    handed over when it completes."""
    channel = unique("tb_many")
    tasks, rounds = 20, 5

    async def scenario() -> Heard:
        heard = Heard()
        async with contextlib.AsyncExitStack() as stack:
            listener = await stack.enter_async_context(opened(url, (channel,), heard))
            senders = [await stack.enter_async_context(connected(url)) for _ in range(4)]

            async def task(number: int) -> None:
                for round_ in range(rounds):
                    payload = f"{number}:{round_}"
                    await notify(senders[number % len(senders)], channel, payload)
                    await listener.barrier()
                    assert payload in heard.payloads(channel)

            await asyncio.gather(*(task(number) for number in range(tasks)))
            assert heard.losses == 0
        return heard

    heard = run(scenario())
    payloads = heard.payloads(channel)
    assert sorted(payloads) == sorted(f"{n}:{r}" for n in range(tasks) for r in range(rounds))
    for number in range(tasks):  # one connection's commits, one after another: in order
        assert [p for p in payloads if p.startswith(f"{number}:")] == [
            f"{number}:{r}" for r in range(rounds)
        ]


# Losing the connection --------------------------------------------------------------------


@pytest.mark.usefixtures("fast_reconnect")
def test_a_terminated_connection_is_lost_then_listened_on_again(url: URL, run: Run[Any]) -> None:
    """The backend is terminated with a barrier sent: that barrier completed before the
    end or fails with ``ListenerLost``; ``on_lost`` is called; until a new connection
    listens, barriers fail at once; then notifications are handed over again."""
    channel = unique("tb_lost")

    async def scenario() -> None:
        heard = Heard()
        async with opened(url, (channel,), heard) as listener, connected(url) as sender:
            await notify(sender, channel, "before")
            await listener.barrier()
            pid = backend_pid(listener)
            pending = listener.barrier()
            with blocking(url) as admin:
                terminate_and_wait(admin, pid)
            try:
                await pending
            except ListenerLost:
                pass  # sent too late: the connection broke first
            await heard.next_loss()
            # Our turn comes before the reconnection's first step: still lost.
            assert heard.losses == 1
            assert not listener.listening
            with pytest.raises(ListenerLost):
                await listener.barrier()
            await eventually(lambda: listener.listening, "listening again")
            assert backend_pid(listener) != pid
            await notify(sender, channel, "after")
            await listener.barrier()
            assert heard.payloads(channel) == ["before", "after"]
            assert heard.losses == 1

    run(scenario())


@pytest.mark.usefixtures("fast_reconnect")
def test_a_barrier_on_a_connection_already_ended_fails(url: URL, run: Run[Any]) -> None:
    """The backend has ended, but the loop has not run since: the listener does not know
    yet, so the barrier goes out; it fails with ``ListenerLost`` (never completes)."""
    channel = unique("tb_dead")

    async def scenario() -> None:
        heard = Heard()
        async with opened(url, (channel,), heard) as listener:
            with blocking(url) as admin:
                terminate_and_wait(admin, backend_pid(listener))
            assert listener.listening  # not noticed yet
            barrier = listener.barrier()
            with pytest.raises(ListenerLost):
                await barrier
            assert heard.losses == 1
            await eventually(lambda: listener.listening, "listening again")
            await listener.barrier()

    run(scenario())


class Relay:
    """A TCP relay to the PostgreSQL server whose answers can be held back (``hold()``):
    a network that stops delivering, without the connection breaking."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_in, server_out = await asyncio.open_connection(*self._target)
            await asyncio.gather(
                self._pump(client_in, server_out, held=False),
                self._pump(server_in, client_out, held=True),
                return_exceptions=True,
            )
        finally:
            client_out.close()
            self._tasks.discard(task)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, held: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if held:
                    await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


@pytest.mark.usefixtures("fast_reconnect")
def test_a_barrier_not_back_in_time_loses_the_connection(
    url: URL, run: Run[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's answers stop arriving (the connection stays up): the barrier fails with
    ``ListenerLost`` after ``BARRIER_TIMEOUT_SECONDS``, and so does one waiting for the next;
    once answers flow again, a new connection listens."""
    channel = unique("tb_timeout")
    if url.host is None:
        pytest.skip("the relay needs the server on TCP")
    host, port = url.host, url.port or 5432

    async def scenario() -> None:
        heard = Heard()
        async with Relay(host, port) as relay:
            relayed = url.set(host="127.0.0.1", port=relay.port)
            async with opened(relayed, (channel,), heard) as listener, connected(url) as sender:
                assert listener.listening
                await listener.barrier()
                relay.hold()
                normal = listen.BARRIER_TIMEOUT_SECONDS
                monkeypatch.setattr(listen, "BARRIER_TIMEOUT_SECONDS", 0.1)
                first, second = listener.barrier(), listener.barrier()
                monkeypatch.setattr(listen, "BARRIER_TIMEOUT_SECONDS", normal)  # for the rest
                with pytest.raises(ListenerLost, match="not back"):
                    await first
                with pytest.raises(ListenerLost, match="not back"):
                    await second
                assert heard.losses == 1
                assert not listener.listening  # answers are held: no new connection yet
                relay.release()
                await eventually(lambda: listener.listening, "listening again")
                await notify(sender, channel, "flowing again")
                await listener.barrier()
                assert heard.payloads(channel)[-1:] == ["flowing again"]
                assert heard.losses == 1

    run(scenario())


# Closing, failing callbacks, no server ----------------------------------------------------


@pytest.mark.usefixtures("fast_reconnect")
def test_close_fails_pending_barriers_and_stops_listening(
    url: URL, listener_url: URL, application_name: str, run: Run[Any]
) -> None:
    channel = unique("tb_close")

    async def scenario() -> None:
        heard = Heard()
        listener = Listener(listener_url, (channel,), heard.on_notify, heard.on_lost)
        await listener.open()
        async with connected(url) as admin:
            assert len(await backends(admin, application_name)) == 1
            in_flight = listener.barrier()
            waiting = listener.barrier()  # the next one: never sent
            await listener.close()
            assert heard.losses == 1
            assert not listener.listening
            with pytest.raises(ListenerLost, match="closed"):
                await in_flight
            with pytest.raises(ListenerLost, match="closed"):
                await waiting
            with pytest.raises(ListenerLost):
                await listener.barrier()
            await no_backend_left(admin, application_name)
            await asyncio.sleep(RECONNECT_SECONDS * 5)  # long enough to reconnect, if it did
            assert await backends(admin, application_name) == []
            assert not listener.listening
            assert heard.losses == 1

    run(scenario())


@pytest.mark.usefixtures("fast_reconnect")
def test_close_while_waiting_to_reconnect_stops_reconnecting(
    url: URL, listener_url: URL, application_name: str, run: Run[Any]
) -> None:
    channel = unique("tb_close_lost")

    async def scenario() -> None:
        heard = Heard()
        listener = Listener(listener_url, (channel,), heard.on_notify, heard.on_lost)
        await listener.open()
        async with connected(url) as admin:
            [pid] = await backends(admin, application_name)
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await heard.next_loss()
            await asyncio.sleep(RECONNECT_SECONDS / 2)  # waiting to try again, most likely
            await listener.close()
            assert heard.losses == 2  # the loss, then the close
            await no_backend_left(admin, application_name)
            await asyncio.sleep(RECONNECT_SECONDS * 5)  # long enough to reconnect, if it did
            assert await backends(admin, application_name) == []
            assert not listener.listening
            with pytest.raises(ListenerLost):
                await listener.barrier()

    run(scenario())


@pytest.mark.usefixtures("fast_reconnect")
def test_an_on_notify_that_raises_loses_the_connection(url: URL, run: Run[Any]) -> None:
    """What was learnt from notifications may now be wrong: the listener starts again from
    nothing (``on_lost``), failing a barrier that waited on the failed notification, and a
    new connection listens."""
    channel = unique("tb_raises")

    async def scenario() -> None:
        heard = Heard(fail_on="refused")
        async with opened(url, (channel,), heard) as listener:
            pid = backend_pid(listener)
            with blocking(url) as sender:  # the loop does not run: the barrier is asked after
                sender.execute("SELECT pg_notify(%s, 'refused')", (channel,))
            with pytest.raises(ListenerLost, match="on_notify"):
                await listener.barrier()
            assert heard.losses == 1
            assert heard.payloads(channel) == ["refused"]
            assert not listener.listening
            await eventually(lambda: listener.listening, "listening again")
            assert backend_pid(listener) != pid
            async with connected(url) as sender_again:
                await notify(sender_again, channel, "accepted")
            await listener.barrier()
            assert heard.payloads(channel) == ["refused", "accepted"]
            assert heard.losses == 1

    run(scenario())


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound by nothing that listens (connections to it are refused)."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port: int = bound.getsockname()[1]
        yield port


@pytest.mark.usefixtures("fast_reconnect")
def test_open_without_a_server_keeps_trying(url: URL, refusing_port: int, run: Run[Any]) -> None:
    channel = unique("tb_no_server")

    async def scenario() -> None:
        heard = Heard()
        listener = Listener(
            url.set(host="127.0.0.1", port=refusing_port),
            (channel,),
            heard.on_notify,
            heard.on_lost,
        )
        await listener.open()  # does not raise
        assert not listener.listening
        with pytest.raises(ListenerLost):
            await listener.barrier()
        await asyncio.sleep(RECONNECT_SECONDS * 3)  # a few attempts, all refused
        assert not listener.listening
        assert heard.notices == []
        await listener.close()
        assert not listener.listening
        with pytest.raises(ListenerLost):
            await listener.barrier()

    run(scenario())


@pytest.mark.usefixtures("fast_reconnect")
def test_open_before_the_database_exists_listens_once_it_does(url: URL, run: Run[Any]) -> None:
    """``open`` keeps trying in the background: a database created later is listened on."""
    name = unique("tb_listen_later")
    later = url.set(database=name)
    channel = unique("tb_later")

    async def scenario() -> None:
        heard = Heard()
        async with opened(later, (channel,), heard) as listener:
            assert not listener.listening
            with pytest.raises(ListenerLost):
                await listener.barrier()
            async with connected(PG_ADMIN_URL) as admin:
                await admin.execute(
                    pg_sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                        pg_sql.Identifier(name)
                    )
                )
            await eventually(lambda: listener.listening, "listening on the new database")
            async with connected(later) as sender:
                await notify(sender, channel, "hello")
            await listener.barrier()
            assert heard.payloads(channel) == ["hello"]
            assert heard.losses == 0

    try:
        run(scenario())
    finally:
        with blocking(PG_ADMIN_URL) as admin:
            admin.execute(
                pg_sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    pg_sql.Identifier(name)
                )
            )


# Cancellation -----------------------------------------------------------------------------


def test_a_cancelled_waiter_cancels_no_one_else(url: URL, run: Run[Any]) -> None:
    """Requests give up waiting (their tasks are cancelled: a client gone, a timeout; a task
    cancelled while awaiting a future cancels that future), one on the barrier in flight,
    one on the next: another asking at the same time still gets its barrier, and the
    listener carries on. The futures are cancelled directly, before the loop runs again, so
    none of them can have completed first."""
    channel = unique("tb_cancel")

    async def scenario() -> None:
        heard = Heard()
        async with opened(url, (channel,), heard) as listener, connected(url) as sender:
            in_flight = listener.barrier()
            gives_up, keeps_waiting = listener.barrier(), listener.barrier()  # the next one
            in_flight.cancel()
            gives_up.cancel()
            assert not keeps_waiting.cancelled()
            await keeps_waiting
            await notify(sender, channel, "still listening")
            await listener.barrier()
            assert heard.payloads(channel) == ["still listening"]
            assert heard.losses == 0

    run(scenario())
