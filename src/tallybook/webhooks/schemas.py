from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    event_types: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Event types to receive: exact (`invoice.finalized`), a family (`invoice.*`) or `*`",
    )
    description: str | None = None


class EndpointUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None


class EndpointDisableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = "disabled by a user"


class EndpointOut(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    url: str
    description: str | None
    event_types: list[str]
    status: str
    disabled_reason: str | None
    disabled_by: str | None
    consecutive_failures: int
    created_at: datetime
    #: Only on create and rotate_secret.
    secret: str | None = None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, *, with_secret: bool = False) -> EndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=list(endpoint.event_types),
            status=endpoint.status,
            disabled_reason=endpoint.disabled_reason,
            disabled_by=endpoint.disabled_by,
            consecutive_failures=endpoint.consecutive_failures,
            created_at=endpoint.created_at,
            secret=endpoint.secret if with_secret else None,
        )


class AttemptOut(BaseModel):
    object: Literal["webhook_attempt"] = "webhook_attempt"
    id: str
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None

    @classmethod
    def of(cls, attempt: WebhookAttempt) -> AttemptOut:
        return cls(
            id=attempt.id,
            attempted_at=attempt.attempted_at,
            status_code=attempt.status_code,
            duration_ms=attempt.duration_ms,
            error=attempt.error,
            response_excerpt=attempt.response_excerpt,
        )


class DeliveryOut(BaseModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut] | None = None

    @classmethod
    def of(
        cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt] | None = None
    ) -> DeliveryOut:
        return cls(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            attempt_log=[AttemptOut.of(a) for a in attempts] if attempts is not None else None,
        )
