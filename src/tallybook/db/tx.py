"""The unit of work.

One :class:`Tx` per request or job: a SQLAlchemy session plus the clock, the actor (who is
acting, for audit) and the request id. Services take a ``Tx`` and never commit; the edge opens
it with :meth:`Database.transaction`, which commits when the block succeeds and rolls back when
it raises. Work that must happen only after a commit (waking a relay, publishing to NATS)
registers with :meth:`Tx.after_commit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session, sessionmaker

from tallybook.db.engine import is_postgres, make_engine
from tallybook.kit.clock import Clock, SystemClock

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Tx:
    session: Session
    clock: Clock
    actor: str
    request_id: str | None = None
    read_only: bool = False
    _after_commit: list[Callable[[], None]] = field(default_factory=list)
    _now: datetime | None = None

    def now(self) -> datetime:
        """The clock's time, fixed at the first call so one unit of work sees one instant."""
        if self._now is None:
            self._now = self.clock.now()
        return self._now

    def fresh_now(self) -> datetime:
        """The clock's current time, for measuring durations inside one unit of work."""
        return self.clock.now()

    @property
    def connection(self) -> Connection:
        return self.session.connection()

    @property
    def is_postgres(self) -> bool:
        bind = self.session.get_bind()
        return bind.dialect.name == "postgresql"

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)


class Database:
    """Engines, session factory and clock for one database."""

    def __init__(
        self,
        url: str | URL,
        *,
        clock: Clock | None = None,
        pool_size: int | None = None,
    ) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.engine: Engine = make_engine(url, pool_size=pool_size)
        self.is_postgres = is_postgres(self.engine)
        # SQLite readers use a deferred-transaction engine so they never queue behind writers.
        self.read_engine: Engine = (
            self.engine if self.is_postgres else make_engine(url, read_only=True)
        )
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=True)
        self._read_sessions = sessionmaker(
            bind=self.read_engine, expire_on_commit=False, autoflush=False
        )

    @contextmanager
    def transaction(self, *, actor: str = "system", request_id: str | None = None) -> Iterator[Tx]:
        """A write unit of work: commit on success, roll back on any exception."""
        session = self._sessions()
        tx = Tx(session=session, clock=self.clock, actor=actor, request_id=request_id)
        try:
            yield tx
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for callback in tx._after_commit:
            try:
                callback()
            except Exception:  # an after-commit hook must never undo a committed answer
                log.exception("after-commit hook failed")

    @contextmanager
    def read(self, *, actor: str = "system", request_id: str | None = None) -> Iterator[Tx]:
        """A read-only unit of work; always rolled back."""
        session = self._read_sessions()
        tx = Tx(
            session=session, clock=self.clock, actor=actor, request_id=request_id, read_only=True
        )
        try:
            yield tx
        finally:
            session.rollback()
            session.close()

    def with_clock(self, clock: Clock) -> Database:
        """A view of the same engines with another clock (tests, simulations)."""
        clone = object.__new__(Database)
        clone.__dict__.update(self.__dict__)
        clone.clock = clock
        return clone

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
