"""The one error shape every failed request answers with."""

from __future__ import annotations

from ._wire import WireModel
from .codes import Code


class ErrorBody(WireModel):
    """``{code, message}``: the body of every non-2xx response."""

    code: Code
    message: str
