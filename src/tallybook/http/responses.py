"""JSON rendering for the API: orjson, Decimals as strings, datetimes as RFC 3339 ``Z``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from tallybook.kit.hashing import json_default
from tallybook.kit.pagination import Page

T = TypeVar("T")

JSON_MEDIA_TYPE: Final = "application/json"


def to_jsonable(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result


def render_json(result: Any) -> bytes:
    return orjson.dumps(to_jsonable(result), default=json_default)


def json_response(
    result: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        content=render_json(result),
        status_code=status_code,
        media_type=JSON_MEDIA_TYPE,
        headers=headers,
    )


class ListEnvelope(BaseModel, Generic[T]):
    """Stripe's list shape."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    url: str


def list_envelope(page: Page[Any], url: str, items: Sequence[Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [to_jsonable(item) for item in items],
        "has_more": page.has_more,
        "url": url,
    }
