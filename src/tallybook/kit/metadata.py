"""``metadata``: free-form string key/value pairs on objects, with Stripe's limits."""

from __future__ import annotations

from typing import Any, Final

from tallybook.kit.errors import CommonCode, InvalidRequest

METADATA_KEYS_MAX: Final = 50
METADATA_KEY_LENGTH_MAX: Final = 40
METADATA_VALUE_LENGTH_MAX: Final = 500


def validate_metadata(metadata: Any, *, param: str = "metadata") -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID, f"{param} must be an object", param=param
        )
    if len(metadata) > METADATA_KEYS_MAX:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"{param} may have at most {METADATA_KEYS_MAX} keys",
            param=param,
        )
    result: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= METADATA_KEY_LENGTH_MAX:
            raise InvalidRequest(
                CommonCode.PARAMETER_INVALID,
                f"{param} keys must be 1-{METADATA_KEY_LENGTH_MAX} characters",
                param=f"{param}.{key}",
            )
        if not isinstance(value, str) or len(value) > METADATA_VALUE_LENGTH_MAX:
            raise InvalidRequest(
                CommonCode.PARAMETER_INVALID,
                f"{param} values must be strings of at most {METADATA_VALUE_LENGTH_MAX} characters",
                param=f"{param}.{key}",
            )
        result[key] = value
    return result
