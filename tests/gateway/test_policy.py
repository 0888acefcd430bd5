"""The policy file: validation errors that name the field path, the validate_policy command,
hot reload in a running Router, and per-tenant overrides (stored, cached, invalidated)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from structlog.testing import capture_logs

from gateway.auth import CredentialCache, authenticate
from gateway.context import RequestContext
from gateway.models import TenantRoutingOverride
from gateway.overrides import routing_override_save
from gateway.policy import PolicyError, apply_override, load_policy, parse_override, parse_policy
from gateway.routing import Router
from tenants.events import VERSION_KEY
from tenants.models import AuditEntry, Tenant
from tenants.services import IssuedKey

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = PROJECT_ROOT / "policy" / "default.yaml"
RELOAD_BUDGET_S = 2.0
CHAT = "/v1/chat/completions"

MINIMAL = """
models: [gpt-4o-mini, gpt-4o, llama3-local]
privacy: {route_to: llama3-local}
complexity: {tiers: {simple: gpt-4o-mini, medium: gpt-4o-mini, complex: gpt-4o}}
"""


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def write_atomically(path: Path, text: str) -> None:
    """How editors and config-map updates save: a new file renamed over the old one."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- validation -----------------------------------------------------------------------------


def test_the_shipped_default_policy_is_valid_and_versioned_by_its_bytes() -> None:
    loaded = load_policy(DEFAULT_POLICY, extra_known_models=())
    assert loaded.policy.privacy.route_to == "llama3-local"
    assert loaded.policy.complexity.tiers.complex == "gpt-4o"
    assert loaded.policy.injection.on_injection == "block"
    assert len(loaded.version) == 16
    assert load_policy(DEFAULT_POLICY, extra_known_models=()).version == loaded.version


def test_unknown_keys_are_errors_that_name_their_path() -> None:
    problems = problems_of(MINIMAL + "privacy: {route_to: llama3-local, colour: red}\n"
                           "routing: {rules: [{name: a, when: {tenants: [x]}, "
                           "action: {type: allow}}]}\n")  # fmt: skip
    assert problems == ["privacy.colour: unknown key", "routing.rules[0].when.tenants: unknown key"]


def test_a_wrong_type_is_an_error_that_names_its_path_and_value() -> None:
    problems = problems_of(
        MINIMAL.replace("complexity: {", "complexity: {medium_threshold: high, ")
    )
    assert len(problems) == 1
    assert problems[0].startswith("complexity.medium_threshold: Input should be a valid number")
    assert problems[0].endswith("(got 'high')")


def test_a_route_to_an_unknown_model_names_the_rule_path() -> None:
    problems = problems_of(
        MINIMAL
        + """
routing:
  rules:
    - {name: first, action: {type: allow}}
    - {name: second, action: {type: serve, model: gpt-4o}}
    - {name: third, action: {type: serve, model: gpt-9}}
"""
    )
    assert problems == [
        "routing.rules[2].action.model: unknown model 'gpt-9' "
        "(declare it in `models` or AICC_KNOWN_MODELS)"
    ]


def test_configured_known_models_admit_a_route_the_file_does_not_declare() -> None:
    text = MINIMAL.replace("complex: gpt-4o}", "complex: claude-big}")
    assert problems_of(text) == [
        "complexity.tiers.complex: unknown model 'claude-big' "
        "(declare it in `models` or AICC_KNOWN_MODELS)"
    ]
    policy = parse_policy(text, extra_known_models={"claude-big"})
    assert policy.complexity.tiers.complex == "claude-big"


def test_section_rules_are_checked() -> None:
    problems = problems_of(
        MINIMAL
        + """
complexity: {medium_threshold: 0.8, complex_threshold: 0.5,
             tiers: {simple: gpt-4o-mini, medium: gpt-4o-mini, complex: gpt-4o}}
injection: {on_injection: route}
routing: {rules: [{name: Bad Name, action: {type: block, model: gpt-4o}}]}
"""
    )
    assert problems == [
        "complexity: medium_threshold must not exceed complex_threshold",
        "injection: safe_model is required when an action is 'route'",
        "routing.rules[0].name: name must be 1-40 of [a-z0-9_.-], starting with a letter or "
        "digit (got 'Bad Name')",
        "routing.rules[0].action: model is only allowed for type 'serve', not 'block'",
    ]


def test_broken_yaml_names_the_line() -> None:
    assert problems_of("models: [a\ncomplexity: {")[0].startswith("line 2, column ")


def test_router_refuses_to_start_on_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(MINIMAL + "routing: {default: {type: serve, model: gpt-9}}\n")
    with pytest.raises(ImproperlyConfigured) as caught:
        Router(path, extra_known_models=frozenset())
    assert "routing.default.model: unknown model 'gpt-9'" in str(caught.value)
    assert str(path) in str(caught.value)


def test_validate_policy_command_accepts_a_valid_file() -> None:
    out = StringIO()
    call_command("validate_policy", str(DEFAULT_POLICY), stdout=out)
    assert "valid (version " in out.getvalue()


def test_validate_policy_command_exits_1_and_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL + "injection: {on_injection: explode}\n")
    finished = subprocess.run(
        [sys.executable, "manage.py", "validate_policy", str(path)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 1
    assert f"{path}: injection.on_injection: Input should be 'block'" in finished.stderr


# --- hot reload -----------------------------------------------------------------------------


async def wait_for_version(router: Router, old_version: str) -> float:
    """Seconds until the router runs a policy other than `old_version` (fails after 2 s)."""
    started = time.monotonic()
    while router.active.version == old_version:
        if time.monotonic() - started > RELOAD_BUDGET_S:
            pytest.fail(f"policy not reloaded within {RELOAD_BUDGET_S} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


Watched = tuple[Router, Path]


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    path = tmp_path / "policy.yaml"
    path.write_text(MINIMAL)
    router = Router(path, extra_known_models=frozenset())
    await router.start()
    await asyncio.sleep(0.1)  # let the watch register before the test edits the file
    yield router, path
    await router.stop()


async def test_a_valid_change_is_in_force_within_two_seconds(watched: Watched) -> None:
    router, path = watched
    old = router.active.version
    path.write_text(MINIMAL.replace("complex: gpt-4o}", "complex: gpt-4o-mini}"))
    await wait_for_version(router, old)
    assert router.active.policy.complexity.tiers.complex == "gpt-4o-mini"
    assert router.snapshot()["version"] == router.active.version


async def test_a_file_replaced_by_rename_is_picked_up(watched: Watched) -> None:
    router, path = watched
    old = router.active.version
    write_atomically(path, MINIMAL.replace("route_to: llama3-local", "route_to: gpt-4o"))
    await wait_for_version(router, old)
    assert router.active.policy.privacy.route_to == "gpt-4o"


async def test_an_invalid_change_keeps_the_last_good_policy_and_logs_why(watched: Watched) -> None:
    router, path = watched
    good = router.active
    with capture_logs() as logs:
        write_atomically(path, MINIMAL + "routing: {default: {type: serve, model: gpt-9}}\n")
        deadline = time.monotonic() + RELOAD_BUDGET_S
        while not any(e["event"] == "policy_reload_failed" for e in logs):
            assert time.monotonic() < deadline, "no policy_reload_failed within 2 s"
            await asyncio.sleep(0.01)
    failure = next(e for e in logs if e["event"] == "policy_reload_failed")
    assert failure["log_level"] == "error"
    assert failure["problems"][0].startswith("routing.default.model: unknown model 'gpt-9'")
    assert failure["version_in_force"] == good.version
    assert router.active is good

    # The watch survives a bad edit: fixing the file is picked up as usual.
    write_atomically(path, MINIMAL.replace("simple: gpt-4o-mini", "simple: gpt-4o"))
    await wait_for_version(router, good.version)
    assert router.active.policy.complexity.tiers.simple == "gpt-4o"


def test_reload_of_an_unchanged_file_keeps_the_loaded_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(MINIMAL)
    router = Router(path, extra_known_models=frozenset())
    loaded = router.active
    assert router.reload() is False
    assert router.active is loaded
    snapshot = router.snapshot()
    assert (snapshot["version"], snapshot["path"]) == (loaded.version, str(path))
    assert snapshot["loaded_at"] == loaded.loaded_at.isoformat()


# --- tenant overrides -----------------------------------------------------------------------


def test_override_layers_on_the_policy() -> None:
    base = parse_policy(
        MINIMAL
        + "routing: {rules: [{name: base-rule, action: {type: allow}}]}\n"
        + "privacy: {route_to: llama3-local, patterns: {order: 'ORD-\\d+'}}\n"
    )
    override = parse_override(
        """
privacy: {patterns: {employee: 'EMP-\\d{6}'}}
complexity: {tiers: {complex: gpt-4o-mini}}
routing: {rules: [{name: tenant-rule, action: {type: serve, model: gpt-4o}}]}
""",
        known_models=base.models,
    )
    merged = apply_override(base, override)
    assert [rule.name for rule in merged.routing.rules] == ["tenant-rule", "base-rule"]
    assert set(merged.privacy.patterns) == {"order", "employee"}
    assert merged.complexity.tiers.complex == "gpt-4o-mini"
    assert merged.complexity.tiers.simple == "gpt-4o-mini"
    assert merged.privacy.route_to == "llama3-local"


def test_override_errors_name_the_path() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_override(
            "privacy: {route_to: gpt-9, patterns: {bad: '('}}\nmodels: [x]\n",
            known_models=frozenset({"gpt-4o"}),
        )
    problems = sorted(caught.value.problems)
    assert problems[0] == "models: unknown key"
    assert problems[1].startswith("privacy.patterns: tenant pattern 'bad' is not a valid regex")


@pytest.mark.django_db
def test_saving_an_invalid_override_is_refused_with_the_path(tenant_a_db: Tenant) -> None:
    override = TenantRoutingOverride(
        tenant=tenant_a_db, document="routing: {default: {type: serve, model: gpt-9}}"
    )
    with pytest.raises(ValidationError) as caught:
        routing_override_save(override=override)
    assert caught.value.message_dict["document"] == [
        "routing.default.model: unknown model 'gpt-9' (the policy does not declare it)"
    ]
    assert not TenantRoutingOverride.objects.exists()


@pytest.mark.django_db
def test_saving_an_override_audits_and_tells_the_gateways(
    tenant_a_db: Tenant,
    redis_client: redis.Redis,
    django_capture_on_commit_callbacks: Callable[..., AbstractContextManager[object]],
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        routing_override_save(
            override=TenantRoutingOverride(tenant=tenant_a_db, document="privacy: {enabled: false}")
        )
    assert redis_client.get(VERSION_KEY) == b"1"
    entry = AuditEntry.objects.get(tenant=tenant_a_db)
    assert entry.action == "routing_override.create"


@pytest.fixture
def tenant_a_db(db: None) -> Tenant:
    return Tenant.objects.create(slug="tenant-a", name="Tenant A")


async def test_after_an_override_change_requests_read_afresh() -> None:
    """A read under way when the overrides were cleared may predate the change: it answers the
    requests already waiting for it, and nothing after the change."""
    reads: list[int] = []
    release = asyncio.Event()

    async def load(*, tenant_id: int) -> str | None:
        reads.append(tenant_id)
        await release.wait()
        return None

    router = Router(extra_known_models=frozenset(), load_override=load)
    caller = SimpleNamespace(record=SimpleNamespace(tenant_id=7, tenant_slug="t"))

    async def route() -> None:
        ctx = RequestContext(correlation_id="c", runtime=None, endpoint=CHAT)  # type: ignore[arg-type]
        ctx.caller = caller  # type: ignore[assignment]
        await router.route(ctx, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]})

    waiting = [asyncio.ensure_future(route()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert reads == [7]  # one read for the five
    router.clear_overrides()
    after = asyncio.ensure_future(route())
    await asyncio.sleep(0.01)
    assert reads == [7, 7]  # the request after the change did not join the older read
    release.set()
    await asyncio.gather(*waiting, after)
    await route()
    assert reads == [7, 7]  # the newer read was kept, the older one was not


async def test_router_caches_a_tenant_override_until_the_version_moves(
    key_a: IssuedKey, aredis: aioredis.Redis
) -> None:
    router = Router(extra_known_models=frozenset())
    credentials = CredentialCache()
    credentials.on_change(router.clear_overrides)
    caller = await authenticate({"authorization": f"Bearer {key_a.raw_key}"}, credentials)
    await credentials.refresh_version(aredis)

    async def served(text: str) -> str:
        ctx = RequestContext(correlation_id="c", runtime=None, endpoint=CHAT)  # type: ignore[arg-type]
        ctx.caller = caller
        payload = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        await router.route(ctx, payload)
        last_route_fields.clear()
        last_route_fields.update(ctx.route_fields)
        return f"{payload['model']} {ctx.route_reason}"

    last_route_fields: dict[str, object] = {}

    card = "Refund card 4111 1111 1111 1111"
    assert await served(card) == "llama3-local privacy.local"
    # What the request log line will carry: the kinds found, never the text.
    assert last_route_fields["pii_kinds"] == ["payment_card"]
    assert "4111" not in repr(last_route_fields)

    tenant = await Tenant.objects.aget(pk=caller.tenant_id)
    await sync_to_async(TenantRoutingOverride.objects.create)(
        tenant=tenant, document="privacy: {enabled: false}"
    )
    # Written behind the router's back (no version bump): the cached answer stands.
    assert await served(card) == "llama3-local privacy.local"

    await aredis.incr(VERSION_KEY)
    await credentials.refresh_version(aredis)
    assert await served(card) == "gpt-4o-mini complexity.simple"

    # An override the current policy no longer accepts is ignored (and logged).
    await TenantRoutingOverride.objects.filter(tenant=tenant).aupdate(
        document="routing: {default: {type: serve, model: gpt-9}}"
    )
    await aredis.incr(VERSION_KEY)
    await credentials.refresh_version(aredis)
    with capture_logs() as logs:
        assert await served(card) == "llama3-local privacy.local"
    assert [e["event"] for e in logs] == ["tenant_override_invalid"]
