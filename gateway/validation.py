"""Request validation before anything is forwarded.

Checks only what the gateway relies on or what would waste an upstream call; every other field
(tools, response_format, logprobs, seed, …) passes through untouched. Each failure is a 400
naming the offending `param`, in OpenAI's words where OpenAI has them.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError, invalid_request

JSON_CONTENT_TYPES = ("application/json",)
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Roles whose content may be null: an assistant turn that only calls tools, a legacy function turn.
NULLABLE_CONTENT_ROLES = frozenset({"assistant", "function"})


def parse_json_object(content_type: str | None, body: bytes) -> dict[str, Any]:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_CONTENT_TYPES:
        raise GatewayError(
            415,
            f"Unsupported Content-Type {media_type or '(none)'!r}; send application/json.",
            code="unsupported_media_type",
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid_request(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return payload


def validate_chat(payload: dict[str, Any]) -> None:
    _require_model(payload)
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid_request("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        _check_message(message, f"messages[{index}]")
    _check_sampling(payload, max_tokens_params=("max_tokens", "max_completion_tokens"))


def validate_completion(payload: dict[str, Any]) -> None:
    _require_model(payload)
    if "prompt" not in payload or not _is_text_or_tokens(payload["prompt"]):
        raise invalid_request(
            "'prompt' must be a string, an array of strings, or an array of token arrays.",
            param="prompt",
        )
    _check_sampling(payload, max_tokens_params=("max_tokens",))


def validate_embedding(payload: dict[str, Any]) -> None:
    _require_model(payload)
    if "input" not in payload or not _is_text_or_tokens(payload["input"]):
        raise invalid_request(
            "'input' must be a non-empty string, an array of strings, or an array of token arrays.",
            param="input",
        )
    dimensions = payload.get("dimensions")
    if dimensions is not None and not _is_int_in(dimensions, 1, 65536):
        raise invalid_request("'dimensions' must be a positive integer.", param="dimensions")
    encoding_format = payload.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise invalid_request(
            "'encoding_format' must be 'float' or 'base64'.", param="encoding_format"
        )


def _require_model(payload: dict[str, Any]) -> None:
    model = payload.get("model")
    if "model" not in payload:
        raise invalid_request(
            "You must provide a model parameter.", param="model", code="missing_required_parameter"
        )
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise invalid_request("'model' must be a non-empty string.", param="model")


def _check_message(message: Any, param: str) -> None:
    if not isinstance(message, dict):
        raise invalid_request(f"'{param}' must be an object.", param=param)
    role = message.get("role")
    if role not in MESSAGE_ROLES:
        raise invalid_request(
            f"'{param}.role' must be one of {', '.join(sorted(MESSAGE_ROLES))}.",
            param=f"{param}.role",
        )
    content = message.get("content")
    if content is None:
        if role in NULLABLE_CONTENT_ROLES and (
            message.get("tool_calls") or message.get("function_call")
        ):
            return
        raise invalid_request(f"'{param}.content' is required.", param=f"{param}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise invalid_request(
            f"'{param}.content' must be a string or a non-empty array of content parts.",
            param=f"{param}.content",
        )
    for part_index, part in enumerate(content):
        part_param = f"{param}.content[{part_index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(
                f"'{part_param}' must be an object with a 'type'.", param=part_param
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise invalid_request(
                f"'{part_param}.text' must be a string.", param=f"{part_param}.text"
            )


def _check_sampling(payload: dict[str, Any], *, max_tokens_params: tuple[str, ...]) -> None:
    _check_number(payload, "temperature", 0, 2)
    _check_number(payload, "top_p", 0, 1)
    _check_number(payload, "presence_penalty", -2, 2)
    _check_number(payload, "frequency_penalty", -2, 2)
    n = payload.get("n")
    if n is not None and not _is_int_in(n, 1, 128):
        raise invalid_request("'n' must be an integer between 1 and 128.", param="n")
    for name in max_tokens_params:
        value = payload.get(name)
        if value is not None and not _is_int_in(value, 1, 10_000_000):
            raise invalid_request(f"'{name}' must be a positive integer.", param=name)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_request("'stream' must be a boolean.", param="stream")
    stream_options = payload.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid_request("'stream_options' must be an object.", param="stream_options")


def _check_number(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid_request(f"'{name}' must be a number between {low} and {high}.", param=name)


def _is_int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_token_array(value: Any) -> bool:
    return bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _is_text_or_tokens(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(item, str) for item in value):
        return True
    if _is_token_array(value):
        return True
    return all(isinstance(item, list) and _is_token_array(item) for item in value)
