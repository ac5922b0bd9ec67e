"""The console, mounted under ``/console`` by ``tallybook.api.app``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/console", include_in_schema=False)
