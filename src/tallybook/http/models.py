from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, UTCDateTime


class IdempotencyRecord(Base):
    """The stored outcome of a POST that carried an ``Idempotency-Key``.

    Written in the same transaction as the work itself, so a key exists if and only if its
    work committed; a retry replays ``status_code`` and ``response_body`` byte for byte.
    """

    __tablename__ = "idempotency_keys"

    caller_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
