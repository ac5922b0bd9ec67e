"""Settings from the environment. Read once at the edge and passed down; never global state."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final

DEFAULT_DATABASE_URL: Final = "sqlite:///tallybook.sqlite"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    #: Hours of grace after a period ends before the period-close job finalizes it.
    late_event_grace_hours: int = 1
    log_json: bool = True
    log_level: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            late_event_grace_hours=int(env.get("TALLYBOOK_LATE_EVENT_GRACE_HOURS", "1")),
            log_json=env.get("TALLYBOOK_LOG_JSON", "1") not in ("0", "false", "no"),
            log_level=env.get("TALLYBOOK_LOG_LEVEL", "INFO"),
            extra={k: v for k, v in env.items() if k.startswith("TALLYBOOK_")},
        )
