"""Every error the server returns is JSON ``{"error": {"code", "message"}}``: never a stack
trace, never an echoed secret. :class:`ApiError` is raised by handlers; the handler
installed by :func:`install_error_handler` turns it (and Sanic's own errors, and anything
unexpected) into that shape with the right status."""

from __future__ import annotations

import logging
from typing import Any

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

log = logging.getLogger("taiwa.server")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    return json({"error": {"code": code, "message": message}}, status=status, headers=headers)


_SANIC_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def install_error_handler(app: Sanic[Any, Any]) -> None:
    @app.exception(ApiError)
    async def api_error(request: Request, exc: ApiError) -> HTTPResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception(SanicException)
    async def sanic_error(request: Request, exc: SanicException) -> HTTPResponse:
        status = int(getattr(exc, "status_code", 500) or 500)
        if status >= 500:
            log.error("server error on %s %s", request.method, request.path, exc_info=exc)
            return error_response(status, "internal_error", "The server failed to handle the request.")
        message = str(exc.args[0]) if exc.args else _SANIC_CODES.get(status, "error")
        if status == 404:
            message = f"No endpoint {request.method} {request.path}. See /openapi.json for the API."
        headers: dict[str, str] = {}
        if status == 405:
            message = f"{request.method} is not allowed on {request.path}."
            allowed = sorted(getattr(exc, "allowed_methods", None) or ())
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        if status == 413:
            message = f"The request body is larger than {request.app.config.REQUEST_MAX_SIZE} bytes."
        return error_response(status, _SANIC_CODES.get(status, "error"), message, headers)

    @app.exception(Exception)
    async def unexpected(request: Request, exc: Exception) -> HTTPResponse:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "The server failed to handle the request.")
