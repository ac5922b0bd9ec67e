"""The checked-in openapi.json is what the app serves. Regenerate with
``tallybook openapi --output openapi.json`` after changing the API."""

from __future__ import annotations

import json
from pathlib import Path

from tallybook.api.app import openapi_document

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.json"


def test_openapi_has_not_drifted() -> None:
    served = json.loads(json.dumps(openapi_document(), sort_keys=True))
    checked_in = json.loads(OPENAPI_FILE.read_text())
    assert served == checked_in, (
        "openapi.json is stale: run `tallybook openapi --output openapi.json` and commit it"
    )


def test_every_post_documents_the_error_shape() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "post" and path.startswith("/v1/"):
                assert "400" in operation["responses"], f"{method.upper()} {path}"
