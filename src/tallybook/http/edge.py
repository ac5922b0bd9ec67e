"""The edge of every API request: authentication, the unit of work and ``Idempotency-Key``.

Endpoints stay thin::

    router = make_router("/v1/customers", tags=["customers"])

    @router.post("", response_model=CustomerOut, responses=ERROR_RESPONSES)
    def create_customer(body: CustomerCreate, edge: Edge = Depends(require("customers:write"))):
        return edge.write(lambda tx: CustomerOut.of(service.create(tx, ...)), fingerprint=body)

:meth:`Edge.write` opens one transaction, runs the service, renders the result and commits
**before** the response leaves: nothing is acknowledged that is not durable. With an
``Idempotency-Key`` header, the key and the rendered response are stored in that same
transaction; a retry with the same key and the same request replays the stored response
(``Idempotent-Replayed: true``); the same key with a different request is an
``idempotency_key_reused`` error. Keys are scoped to the API key and kept for 24 hours.
"""

from __future__ import annotations

import decimal
import json
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from starlette.responses import Response

from tallybook.auth.service import Caller, hash_secret, verify_secret
from tallybook.db import Database, Tx
from tallybook.http.errors import render_error, request_id_of
from tallybook.http.models import IdempotencyRecord
from tallybook.http.responses import json_response, render_json
from tallybook.kit.errors import (
    AuthenticationFailed,
    CommonCode,
    IdempotencyError,
    InvalidRequest,
    TallybookError,
)
from tallybook.kit.hashing import content_hash
from tallybook.kit.pagination import LIMIT_DEFAULT, LIMIT_MAX, PageRequest

T = TypeVar("T")

IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
IDEMPOTENCY_KEY_TTL_SECONDS: Final = 24 * 3600
CALLER_CACHE_TTL_SECONDS: Final = 10.0
CALLER_CACHE_SIZE_MAX: Final = 10_000


class DecimalJSONRequest(Request):
    """Decodes JSON bodies with fractional numbers as Decimal, so they never become floats."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = json.loads(body, parse_float=decimal.Decimal)
        return self._json


class TallybookRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(DecimalJSONRequest(request.scope, request.receive))

        return route_handler


def make_router(prefix: str, *, tags: list[str]) -> APIRouter:
    return APIRouter(prefix=prefix, tags=list(tags), route_class=TallybookRoute)


@dataclass(frozen=True, slots=True)
class Reply:
    """A committed outcome that is still an error for the caller (for example a ledger
    transfer that failed for insufficient balance: the failure is recorded under its id, so
    the transaction commits, but the response is a 409)."""

    error: TallybookError


# Authentication ---------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer tbk_…`")
_caller_cache: dict[str, tuple[Caller, float]] = {}
_caller_cache_lock = threading.Lock()


def clear_caller_cache() -> None:
    with _caller_cache_lock:
        _caller_cache.clear()


def cached_caller(secret: str) -> Caller | None:
    """The caller of a key verified less than ``CALLER_CACHE_TTL_SECONDS`` ago, or ``None``
    (no I/O: the API's event loop asks this before it hands :func:`authenticate` to a
    thread)."""
    cached = _caller_cache.get(hash_secret(secret))
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    return None


def authenticate(db: Database, secret: str) -> Caller:
    """Verify an API key secret, caching positive answers briefly (revocation takes effect
    within ``CALLER_CACHE_TTL_SECONDS``)."""
    digest = hash_secret(secret)
    now = time.monotonic()
    cached = _caller_cache.get(digest)
    if cached is not None and cached[1] > now:
        return cached[0]
    with db.read(actor="system:auth") as tx:
        caller = verify_secret(tx, secret)
    with _caller_cache_lock:
        if len(_caller_cache) >= CALLER_CACHE_SIZE_MAX:
            _caller_cache.clear()
        _caller_cache[digest] = (caller, now + CALLER_CACHE_TTL_SECONDS)
    return caller


def get_database(request: Request) -> Database:
    db = request.app.state.db
    assert isinstance(db, Database)
    return db


@dataclass(frozen=True, slots=True)
class Edge:
    request: Request
    db: Database
    caller: Caller

    @property
    def request_id(self) -> str | None:
        return request_id_of(self.request)

    def read(self, fn: Callable[[Tx], Any], *, status_code: int = 200) -> Response:
        with self.db.read(actor=self.caller.actor, request_id=self.request_id) as tx:
            result = fn(tx)
        return json_response(result, status_code=status_code)

    def write(
        self,
        fn: Callable[[Tx], Any],
        *,
        fingerprint: Any = None,
        status_code: int = 200,
    ) -> Response:
        key = self.request.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
            raise InvalidRequest(
                CommonCode.IDEMPOTENCY_KEY_INVALID,
                f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_LENGTH_MAX} characters",
                param=IDEMPOTENCY_KEY_HEADER,
            )
        with self.db.transaction(actor=self.caller.actor, request_id=self.request_id) as tx:
            if key is not None:
                replay = self._claim_key(tx, key, fingerprint)
                if replay is not None:
                    return replay
            result = fn(tx)
            if isinstance(result, Reply):
                status = result.error.status
                body = render_json(result.error.to_wire(self.request_id))
            else:
                status = status_code
                body = render_json(result)
            if key is not None:
                self._store_response(tx, key, status, body)
        return Response(content=body, status_code=status, media_type="application/json")

    def _fingerprint(self, fingerprint: Any) -> str:
        body = (
            fingerprint.model_dump(mode="json")
            if hasattr(fingerprint, "model_dump")
            else (fingerprint)
        )
        return content_hash(
            {
                "method": self.request.method,
                "path": self.request.url.path,
                "query": sorted(self.request.query_params.multi_items()),
                "body": body,
            }
        )

    def _claim_key(self, tx: Tx, key: str, fingerprint: Any) -> Response | None:
        request_sha256 = self._fingerprint(fingerprint)
        insert = postgresql.insert if tx.is_postgres else sqlite.insert
        inserted = tx.session.execute(
            insert(IdempotencyRecord)
            .values(
                caller_id=self.caller.id,
                key=key,
                method=self.request.method,
                path=self.request.url.path,
                request_sha256=request_sha256,
                created_at=tx.now(),
            )
            .on_conflict_do_nothing(index_elements=["caller_id", "key"])
            .returning(IdempotencyRecord.key)
        ).first()
        if inserted is not None:
            return None
        record = tx.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.caller_id == self.caller.id, IdempotencyRecord.key == key
            )
        )
        if record is None or record.status_code is None or record.response_body is None:
            raise IdempotencyError(
                CommonCode.IDEMPOTENCY_KEY_IN_USE,
                "a request with this Idempotency-Key is still in progress",
                param=IDEMPOTENCY_KEY_HEADER,
            )
        if record.request_sha256 != request_sha256:
            raise IdempotencyError(
                CommonCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used with a different request",
                param=IDEMPOTENCY_KEY_HEADER,
            )
        return Response(
            content=record.response_body.encode(),
            status_code=record.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )

    def _store_response(self, tx: Tx, key: str, status: int, body: bytes) -> None:
        record = tx.session.get(IdempotencyRecord, (self.caller.id, key))
        assert record is not None
        record.status_code = status
        record.response_body = body.decode()


def require(scope: str) -> Callable[..., Edge]:
    """A dependency that authenticates the caller and checks ``scope``."""

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Edge:
        if credentials is None or not credentials.credentials:
            raise AuthenticationFailed(
                CommonCode.API_KEY_MISSING,
                "pass an API key as 'Authorization: Bearer tbk_…'",
            )
        db = get_database(request)
        caller = authenticate(db, credentials.credentials)
        caller.require(scope)
        return Edge(request=request, db=db, caller=caller)

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


def page_params(
    limit: int = Query(LIMIT_DEFAULT, ge=1, le=LIMIT_MAX, description="1 to 100"),
    starting_after: str | None = Query(
        None, description="Cursor: the last id of the previous page"
    ),
    ending_before: str | None = Query(None, description="Cursor: the first id of the next page"),
) -> PageRequest:
    return PageRequest(limit=limit, starting_after=starting_after, ending_before=ending_before)


def reply_error(error: TallybookError, request: Request) -> Response:
    return render_error(error, request_id_of(request))
