"""All SQL for customers."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select

from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest


def get(tx: Tx, customer_id: str) -> Customer | None:
    return tx.session.get(Customer, customer_id)


def get_by_external_id(tx: Tx, external_id: str) -> Customer | None:
    return tx.session.scalar(select(Customer).where(Customer.external_id == external_id))


def ids_by_external_ids(tx: Tx, external_ids: Sequence[str]) -> dict[str, str]:
    """Map external ids to customer ids for the ones that exist (one query)."""
    if not external_ids:
        return {}
    rows = tx.session.execute(
        select(Customer.external_id, Customer.id).where(Customer.external_id.in_(external_ids))
    )
    return {external_id: customer_id for external_id, customer_id in rows}


def page(tx: Tx, request: PageRequest, *, email: str | None = None) -> list[Customer]:
    """Newest first; up to ``limit + 1`` rows so the caller can tell ``has_more``."""
    query = select(Customer)
    if email is not None:
        query = query.where(Customer.email == email)
    if request.starting_after:
        query = query.where(Customer.id < request.starting_after).order_by(Customer.id.desc())
    elif request.ending_before:
        query = query.where(Customer.id > request.ending_before).order_by(Customer.id.asc())
    else:
        query = query.order_by(Customer.id.desc())
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    if request.ending_before:
        has_more_marker = rows[request.limit :]
        rows = list(reversed(rows[: request.limit])) + has_more_marker
    return rows


def search(tx: Tx, text: str, *, limit: int) -> list[Customer]:
    """Match id, external id, email exactly, or name/email/external id by substring."""
    pattern = f"%{text.lower()}%"
    query = (
        select(Customer)
        .where(
            or_(
                Customer.id == text,
                Customer.external_id == text,
                func.lower(Customer.email) == text.lower(),
                func.lower(Customer.name).like(pattern),
                func.lower(Customer.email).like(pattern),
                func.lower(Customer.external_id).like(pattern),
            )
        )
        .order_by(Customer.id.desc())
        .limit(limit)
    )
    return list(tx.session.scalars(query))
