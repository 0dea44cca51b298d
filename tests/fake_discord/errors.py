"""Discord's error responses: ``{"code", "message"[, "errors"]}`` (API v10 "Error Messages").

``errors`` of a 400/50035 "Invalid Form Body" is a tree following the JSON path of each bad field,
each leaf holding ``_errors: [{code, message}]`` - :class:`FormErrors` builds it.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from aiohttp import web


class ApiError(Exception):
    """Raised by handlers; rendered as a Discord error response."""

    def __init__(self, status: int, code: int, message: str, errors: Optional[Dict[str, Any]] = None, *,
                 extra: Optional[Dict[str, Any]] = None, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors
        #: More top-level body fields (429: ``retry_after``, ``global``) and response headers.
        self.extra, self.headers = extra or {}, headers or {}

    def body(self) -> Dict[str, Any]:
        body: Dict[str, Any] = {"message": self.message, "code": self.code, **self.extra}
        if self.errors:
            body["errors"] = self.errors
        return body

    def response(self) -> web.Response:
        response = json_response(self.body(), self.status)
        response.headers.update(self.headers)
        return response


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def _form_error(field: str, code: str, message: str) -> ApiError:
    errors = FormErrors()
    errors.add(field, code, message)
    return errors.error()


class FormErrors:
    """Collects every bad field of a request body, like Discord reports them all at once."""

    def __init__(self) -> None:
        self.tree: Dict[str, Any] = {}

    def add(self, path: str, code: str, message: str) -> None:
        node = self.tree
        for part in str(path).split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self.tree)

    def error(self) -> ApiError:
        return ApiError(400, 50035, "Invalid Form Body", self.tree)

    def raise_if_any(self) -> None:
        if self.tree:
            raise self.error()


# Common Discord errors.
def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


MISSING_ACCESS = (403, 50001, "Missing Access")
MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")
UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
ALREADY_ACKNOWLEDGED = (400, 40060, "Interaction has already been acknowledged.")
EMPTY_MESSAGE = (400, 50006, "Cannot send an empty message")
