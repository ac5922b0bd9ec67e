"""The audit log: every console action and sign-in, with who, as what role, why, and how it
ended. Append-only: this module only inserts, and database triggers refuse UPDATE and DELETE.

Actions go through :func:`tallybook.console.actions.run_action`, which writes the entry in the
same transaction as the change. Command-line user management writes with
:func:`record_system`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Select, select

from tallybook.console.models import ConsoleAuditEntry
from tallybook.console.roles import SYSTEM_ROLE
from tallybook.db import Tx
from tallybook.kit.hashing import json_dumps, json_loads
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money

REASON_LENGTH_MAX: Final = 2000
MESSAGE_LENGTH_MAX: Final = 2000
PAGE_SIZE_MAX: Final = 200


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a console user (``cusr_…``) or an API key (``key_…``), with the role held."""

    id: str
    name: str
    role: str


def _jsonable(value: Any) -> Any:
    if isinstance(value, Money):
        return {"amount_minor": value.amount_minor, "currency": value.currency}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def record(
    tx: Tx,
    *,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: str | None,
    reason: str,
    outcome: Outcome,
    customer_id: str | None = None,
    error_code: str | None = None,
    message: str | None = None,
    action_token: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> ConsoleAuditEntry:
    entry = ConsoleAuditEntry(
        id=new_id("aud"),
        created_at=tx.now(),
        actor=actor.id,
        actor_name=actor.name[:320],
        role=actor.role,
        action=action,
        object_type=object_type,
        object_id=object_id,
        customer_id=customer_id,
        reason=reason[:REASON_LENGTH_MAX],
        outcome=outcome.value,
        error_code=error_code,
        message=message[:MESSAGE_LENGTH_MAX] if message else None,
        request_id=tx.request_id,
        action_token=action_token,
        details=json_loads(json_dumps(_jsonable(details or {}))),
    )
    tx.session.add(entry)
    return entry


def record_system(
    tx: Tx,
    *,
    action: str,
    object_type: str,
    object_id: str | None,
    reason: str,
    details: Mapping[str, Any] | None = None,
) -> ConsoleAuditEntry:
    """An operation from the command line (or another trusted process): the actor is the
    transaction's actor and the role ``system``."""
    actor = Actor(id=tx.actor, name=tx.actor, role=SYSTEM_ROLE)
    return record(
        tx,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        reason=reason,
        outcome=Outcome.SUCCEEDED,
        details=details,
    )


def by_token(tx: Tx, action_token: str) -> ConsoleAuditEntry | None:
    return tx.session.scalar(
        select(ConsoleAuditEntry).where(ConsoleAuditEntry.action_token == action_token)
    )


def get(tx: Tx, entry_id: str) -> ConsoleAuditEntry | None:
    return tx.session.get(ConsoleAuditEntry, entry_id)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    customer_id: str | None = None
    object_id: str | None = None
    outcome: str | None = None


#: Sortable columns of the audit page; the id (time order) breaks ties.
SORTS: Final[Mapping[str, Any]] = {
    "time": ConsoleAuditEntry.id,
    "actor": ConsoleAuditEntry.actor_name,
    "action": ConsoleAuditEntry.action,
    "outcome": ConsoleAuditEntry.outcome,
}


def _filtered(query: Select[tuple[ConsoleAuditEntry]], where: AuditFilter) -> Any:
    if where.actor:
        # An id (cusr_…, key_…) or the name/email recorded at the time.
        query = query.where(
            (ConsoleAuditEntry.actor == where.actor)
            | (ConsoleAuditEntry.actor_name == where.actor)
            | (ConsoleAuditEntry.actor_name == where.actor.lower())
        )
    if where.action:
        query = query.where(ConsoleAuditEntry.action == where.action)
    if where.customer_id:
        query = query.where(ConsoleAuditEntry.customer_id == where.customer_id)
    if where.object_id:
        query = query.where(ConsoleAuditEntry.object_id == where.object_id)
    if where.outcome:
        query = query.where(ConsoleAuditEntry.outcome == where.outcome)
    return query


def search(
    tx: Tx,
    where: AuditFilter,
    *,
    sort: str = "time",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> list[ConsoleAuditEntry]:
    """A page of entries; ask for ``limit + 1`` to learn whether there is a next page."""
    column = SORTS.get(sort, ConsoleAuditEntry.id)
    order = [column.desc() if descending else column.asc()]
    if column is not ConsoleAuditEntry.id:
        order.append(ConsoleAuditEntry.id.desc())
    query = _filtered(select(ConsoleAuditEntry), where).order_by(*order)
    return list(tx.session.scalars(query.offset(offset).limit(min(limit, PAGE_SIZE_MAX + 1))))


def for_customer(
    tx: Tx, customer_id: str, *, before_id: str | None = None, limit: int = 50
) -> list[ConsoleAuditEntry]:
    """A customer's entries, newest first (for the timeline)."""
    query = select(ConsoleAuditEntry).where(ConsoleAuditEntry.customer_id == customer_id)
    if before_id is not None:
        query = query.where(ConsoleAuditEntry.id < before_id)
    return list(tx.session.scalars(query.order_by(ConsoleAuditEntry.id.desc()).limit(limit)))
