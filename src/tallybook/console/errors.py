"""The console's error codes (documented in docs/errors.md under "Console")."""

from __future__ import annotations

from enum import StrEnum


class ConsoleCode(StrEnum):
    USER_EMAIL_INVALID = "console_user_email_invalid"
    USER_EMAIL_TAKEN = "console_user_email_taken"
    PASSWORD_INVALID = "console_password_invalid"
    SIGN_IN_FAILED = "console_sign_in_failed"
    USER_LOCKED = "console_user_locked"
    ROLE_TOO_LOW = "console_role_too_low"
    ACTION_REFUSED = "console_action_refused"
    CSRF_INVALID = "console_csrf_invalid"
    REASON_MISSING = "console_reason_missing"
    ACTION_TOKEN_INVALID = "console_action_token_invalid"
    ACTION_TOKEN_REUSED = "console_action_token_reused"
    PAGE_NOT_FOUND = "console_page_not_found"
    USER_SELF = "console_user_self"
    AMOUNT_INVALID = "console_amount_invalid"
