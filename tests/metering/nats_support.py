"""The real NATS JetStream server for tests: unique stream and subject names per test, the
stream deleted afterwards. Unreachable → skipped with instructions, except under CI=true."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import pytest

from tallybook.metering.settings import MeteringSettings

T = TypeVar("T")

NATS_URL: Final = os.environ.get("TALLYBOOK_TEST_NATS_URL", "nats://127.0.0.1:4222")
IN_CI: Final = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unique_settings(**overrides: Any) -> MeteringSettings:
    tag = secrets.token_hex(4)
    fields: dict[str, Any] = {
        "ingest_mode": "nats",
        "nats_url": NATS_URL,
        "nats_stream": f"TB_TEST_{tag.upper()}",
        "nats_subject": f"tbtest.{tag}.events",
        "nats_durable": f"tbtest-{tag}",
    }
    fields.update(overrides)
    return MeteringSettings(**fields)


def env_of(settings: MeteringSettings) -> dict[str, str]:
    return {
        "TALLYBOOK_METERING_INGEST": settings.ingest_mode,
        "TALLYBOOK_NATS_URL": settings.nats_url,
        "TALLYBOOK_NATS_STREAM": settings.nats_stream,
        "TALLYBOOK_NATS_SUBJECT": settings.nats_subject,
        "TALLYBOOK_NATS_DURABLE": settings.nats_durable,
    }


async def _probe() -> str | None:
    import nats

    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:  # any failure to reach the server
        return f"{type(exc).__name__}: {exc}"
    try:
        await nc.jetstream().account_info()
    except Exception as exc:  # reachable, but without JetStream
        return f"JetStream unavailable: {exc}"
    finally:
        await nc.close()
    return None


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, also from a thread whose event loop is already running (browser tests
    in the same worker leave one): then the coroutine runs on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def require_nats() -> None:
    reason = run_async(_probe())
    if reason is None:
        return
    message = (
        f"NATS JetStream is not reachable at {NATS_URL} ({reason}). Start `nats-server -js` "
        "or point TALLYBOOK_TEST_NATS_URL at one."
    )
    if IN_CI:
        pytest.fail("CI=true and " + message, pytrace=False)
    pytest.skip(message)


async def delete_stream(settings: MeteringSettings) -> None:
    import nats

    nc = await nats.connect(settings.nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        await nc.jetstream().delete_stream(settings.nats_stream)
    except Exception:  # already gone
        pass
    finally:
        await nc.close()


async def consumer_state(settings: MeteringSettings) -> tuple[int, int]:
    """(messages not yet delivered, delivered but not acknowledged); (-1, -1) while the
    consumer does not exist yet."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(settings.nats_url, connect_timeout=2)
    try:
        info = await nc.jetstream().consumer_info(settings.nats_stream, settings.nats_durable)
        return int(info.num_pending), int(info.num_ack_pending)
    except NotFoundError:
        return -1, -1
    finally:
        await nc.close()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, seconds: float = 60, what: str
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
