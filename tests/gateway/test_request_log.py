"""One JSON `request_completed` line per request, with the correlation id and no secrets."""

from __future__ import annotations

import httpx

from tenants.services import IssuedKey
from tests.live import UPSTREAM_API_KEY, GatewayProcess


def test_each_request_logs_one_completed_line_without_key_or_content(
    gateway: GatewayProcess, key_a: IssuedKey
) -> None:
    secret_prompt = "my-private-prompt-text-8f3a"
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key_a.raw_key}", "X-Correlation-ID": "log-test-1"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": secret_prompt}]},
    )
    assert response.status_code == 200
    completed = gateway.completed_lines("log-test-1")
    assert len(completed) == 1
    line = completed[0]
    assert line["correlation_id"] == "log-test-1"
    assert line["status"] == 200
    assert line["tenant_id"] == key_a.api_key.tenant_id
    assert line["key_id"] == key_a.api_key.public_id
    assert line["model"] == "gpt-4o-mini"
    assert line["prompt_tokens"] == 1 and line["completion_tokens"] == 8
    assert "cost_usd" in line  # None here: this database has no price for the model
    assert isinstance(line["latency_ms"], float) and isinstance(line["upstream_latency_ms"], float)
    # The routing decision rides on the same line: kinds and verdicts, never text.
    assert line["served_model"] == line["routed_model"] == "gpt-4o-mini"
    assert (line["route_action"], line["route_reason"]) == ("serve", "requested")
    assert line["pii_kinds"] == [] and line["injection_verdict"] == "clean"
    assert line["complexity_tier"] == "simple" and isinstance(line["route_latency_ms"], float)
    assert sum('"request_completed"' in row for row in gateway.log().splitlines()) >= 1
    assert '"route_decided"' not in gateway.log()
    log_text = gateway.log()
    assert key_a.raw_key not in log_text
    assert UPSTREAM_API_KEY not in log_text
    assert secret_prompt not in log_text


def test_refused_requests_are_logged_with_their_status(gateway: GatewayProcess) -> None:
    httpx.get(f"{gateway.url}/v1/models", headers={"X-Correlation-ID": "log-test-2"})
    completed = gateway.completed_lines("log-test-2")
    assert [line["status"] for line in completed] == [401]
