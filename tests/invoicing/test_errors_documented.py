"""Every invoicing error code is documented in docs/errors.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tallybook.invoicing.errors import InvoiceCode

ERRORS_DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


@pytest.mark.parametrize("code", list(InvoiceCode), ids=str)
def test_code_is_documented(code: str) -> None:
    assert f"`{code}`" in ERRORS_DOC.read_text()
