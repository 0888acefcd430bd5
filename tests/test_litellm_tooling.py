"""A real LiteLLM proxy in front of the fake upstream: chat, stream and embeddings round trips."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import yaml

from tests import litellm_proxy
from tests.fake_upstream import FakeUpstream
from tests.litellm_proxy import (
    MODEL_NAMES,
    UPSTREAM_API_KEY,
    LiteLLMProxy,
    litellm_env,
    start_litellm,
    write_config,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as started:
        yield started


@pytest.fixture(scope="module")
def litellm(upstream: FakeUpstream) -> Iterator[LiteLLMProxy]:
    with start_litellm(upstream.url) as proxy:
        yield proxy


@pytest.fixture
def client(litellm: LiteLLMProxy, upstream: FakeUpstream) -> openai.OpenAI:
    upstream.reset()  # LiteLLM lists the upstream's models at start-up; count only the test's calls
    return openai.OpenAI(base_url=litellm.api_base, api_key=litellm.master_key, max_retries=0)


def test_child_environment_carries_no_database_redis_or_provider_settings(monkeypatch):
    for name in ("DATABASE_URL", "DATABASE_HOST", "REDIS_URL", "OPENAI_API_KEY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "must-not-leak")
    env = litellm_env()
    assert "must-not-leak" not in env.values()
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"


def test_litellm_runs_on_the_same_python_build_as_the_project(tmp_path, litellm):
    # The benchmark compares two Python proxies: a venv made from another interpreter (another
    # build may be 10-15 % faster or slower) does not count as installed.
    assert litellm_proxy.is_installed()
    venv = litellm_proxy.VENV_DIR
    assert litellm_proxy._venv_home(venv) == str(litellm_proxy.base_python().parent)
    other = tmp_path / "venv"
    other.mkdir()
    (other / "pyvenv.cfg").write_text("home = /opt/another-python/bin\nversion = 3.11.0\n")
    assert not litellm_proxy.is_installed(other)


def test_config_routes_every_model_to_the_upstream_in_master_key_mode(tmp_path):
    config = yaml.safe_load(write_config("http://127.0.0.1:9/v1", tmp_path).read_text())
    assert [entry["model_name"] for entry in config["model_list"]] == list(MODEL_NAMES)
    assert {entry["litellm_params"]["api_base"] for entry in config["model_list"]} == {
        "http://127.0.0.1:9/v1"
    }
    assert config["model_list"][0]["litellm_params"]["model"] == "openai/gpt-4o-mini"
    assert set(config["general_settings"]) == {"master_key"}  # no database_url


@pytest.mark.litellm
def test_chat_through_litellm_reaches_the_fake_with_litellm_s_own_key(client, upstream, litellm):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there world"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == (
        "echo: hello there world echo: hello there world"
    )
    assert completion.usage is not None and completion.usage.total_tokens == 11
    assert float(raw.headers["x-litellm-response-cost"]) > 0
    stats = upstream.stats()
    assert stats["llm_calls"] == 1
    forwarded = stats["recent"][-1]
    assert forwarded["headers"]["authorization"] == f"Bearer {UPSTREAM_API_KEY}"
    assert litellm.master_key not in str(forwarded)


@pytest.mark.litellm
def test_stream_through_litellm_keeps_words_and_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hello there"}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there echo:"
    usage = next(c.usage for c in reversed(chunks) if c.usage is not None)
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 4)


@pytest.mark.litellm
def test_embeddings_through_litellm_match_the_fake(client, upstream):
    through_litellm = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    direct = openai.OpenAI(base_url=upstream.api_base, api_key="sk-direct").embeddings.create(
        model="text-embedding-3-small", input=["a b", "c"]
    )
    assert len(through_litellm.data) == len(direct.data) == 2
    for relayed, original in zip(through_litellm.data, direct.data, strict=True):
        assert relayed.embedding == pytest.approx(original.embedding)
    assert through_litellm.usage.prompt_tokens == 3
