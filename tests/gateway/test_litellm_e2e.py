"""The real upstream: client → AICC → a real LiteLLM proxy (master-key mode) → fake LLM.

LiteLLM is installed by the test tooling into its own environment (.cache/litellm-venv,
`litellm[proxy]==1.108.7`). If it cannot be installed the tests are skipped with a loud reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tenants.services import IssuedKey
from tests.fake_upstream import FakeUpstream
from tests.litellm_proxy import LiteLLMProxy, ensure_litellm_installed, start_litellm
from tests.live import GatewayProcess

pytestmark = pytest.mark.litellm


@pytest.fixture(scope="module")
def litellm(fake_upstream: FakeUpstream) -> Iterator[LiteLLMProxy]:
    try:
        ensure_litellm_installed()
    except Exception as exc:  # no registry, disk full, …: say so, do not pretend
        pytest.skip(f"!!! LiteLLM COULD NOT BE INSTALLED, real-upstream test not run: {exc}")
    with start_litellm(fake_upstream.url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gateway_via_litellm(
    django_db_setup: None, litellm: LiteLLMProxy, redis_url: str
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        upstream_url=litellm.url,
        redis_url=redis_url,
        env={"AICC_UPSTREAM_API_KEY": litellm.master_key, "AICC_UPSTREAM_READ_TIMEOUT_S": "30"},
    ).start()
    yield process
    process.stop()


@pytest.fixture
def client(gateway_via_litellm: GatewayProcess, key_a: IssuedKey) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway_via_litellm.url}/v1", api_key=key_a.raw_key, max_retries=0
    )


def test_chat_through_litellm_and_the_gateway_reads_litellm_s_cost(
    client: openai.OpenAI, gateway_via_litellm: GatewayProcess
) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "through both proxies"}],
        extra_headers={"X-Correlation-ID": "litellm-chat-1"},
    )
    assert completion.choices[0].message.content.startswith("echo: through both proxies")
    (line,) = gateway_via_litellm.completed_lines("litellm-chat-1")
    assert line["status"] == 200 and line["prompt_tokens"] == 3
    assert float(line["upstream_cost_usd"]) > 0  # type: ignore[arg-type]


def test_stream_through_litellm(client: openai.OpenAI, gateway_via_litellm: GatewayProcess) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream through both"}],
            stream=True,
            extra_headers={"X-Correlation-ID": "litellm-stream-1"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: stream through both")
    assert all(c.usage is None for c in chunks)  # usage was asked for by AICC, not the client
    (line,) = gateway_via_litellm.completed_lines("litellm-stream-1")
    assert line["completion_tokens"] == 8
    assert float(line["upstream_cost_usd"]) > 0  # type: ignore[arg-type]


def test_embeddings_through_litellm(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
