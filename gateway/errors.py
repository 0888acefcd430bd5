"""One error type for the hot path, rendered in OpenAI's shape in one place.

Every refusal raises `GatewayError`; `error_body()` turns it into
`{"error": {"message", "type", "param", "code"}}`. Nothing a client sends may surface as a 500.
"""

from __future__ import annotations

import orjson

# OpenAI's error types by status, so callers only pick a status and a code.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or _TYPE_BY_STATUS.get(status, "invalid_request_error")
        self.headers = headers or []


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> GatewayError:
    return GatewayError(400, message, param=param, code=code or "invalid_value")


def error_body(message: str, *, error_type: str, param: str | None, code: str | None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def render(error: GatewayError) -> bytes:
    return error_body(
        error.message, error_type=error.error_type, param=error.param, code=error.code
    )
