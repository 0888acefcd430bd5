"""AICC settings: everything comes from the environment (see .env.example).

Defaults run on a laptop: a SQLite file and an embedded Redis on a unix socket that
`make run` / the test suite start when REDIS_URL is unset. Invalid values stop start-up.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from aicc_site import embedded_redis
from aicc_site.env import env_bool, env_float, env_int, env_json, env_list, env_str, env_url
from billing.schedule import BEAT_SCHEDULE as BILLING_BEAT_SCHEDULE  # imports only celery

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY", "insecure-debug-only-secret-key")
else:
    SECRET_KEY = env_str("SECRET_KEY", required=True)
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters when DEBUG is off")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "tenants",
    "billing",
    "gateway",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "aicc_site.urls"
ASGI_APPLICATION = "aicc_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{BASE_DIR / 'var' / 'aicc.sqlite3'}",
    schemes=("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not ":memory:", so gateway processes started by the tests share the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {"timeout": 20}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache, Celery broker, channel layer -----------------------------------------------
REDIS_URL = env_url("REDIS_URL", embedded_redis.URL, schemes=("redis", "rediss", "unix"))
IS_EMBEDDED_REDIS = REDIS_URL == embedded_redis.URL
REDIS_TIMEOUT_S = env_float("AICC_REDIS_TIMEOUT_S", 1.0, minimum=0.01)
AICC_REDIS_MAX_CONNECTIONS = env_int("AICC_REDIS_MAX_CONNECTIONS", 256, minimum=4)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "aicc:cache",
    }
}

# Celery spells a unix-socket Redis "redis+socket://".
CELERY_BROKER_URL = (
    REDIS_URL.replace("unix://", "redis+socket://", 1)
    if REDIS_URL.startswith("unix://")
    else REDIS_URL
)
CELERY_BEAT_SCHEDULE = {
    **BILLING_BEAT_SCHEDULE,
    # /health/detailed reads the age of this heartbeat (stale after 60 s -> degraded).
    "gateway-celery-heartbeat": {
        "task": "gateway.tasks.celery_heartbeat",
        "schedule": 10.0,
        "options": {"expires": 10},
    },
}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"

# --- The upstream (LiteLLM proxy or any OpenAI-compatible server) ----------------------------
AICC_UPSTREAM_URL = env_url(
    "AICC_UPSTREAM_URL", "http://127.0.0.1:4000", schemes=("http", "https")
).rstrip("/")
AICC_UPSTREAM_API_KEY = env_str("AICC_UPSTREAM_API_KEY", "")
AICC_UPSTREAM_CONNECT_TIMEOUT_S = env_float("AICC_UPSTREAM_CONNECT_TIMEOUT_S", 5.0, minimum=0.001)
AICC_UPSTREAM_READ_TIMEOUT_S = env_float("AICC_UPSTREAM_READ_TIMEOUT_S", 120.0, minimum=0.001)
AICC_UPSTREAM_MAX_CONNECTIONS = env_int("AICC_UPSTREAM_MAX_CONNECTIONS", 256, minimum=1)
AICC_UPSTREAM_NAME = env_str("AICC_UPSTREAM_NAME", "litellm")
# More OpenAI-compatible servers, for fallbacks: {"ollama": {"url": "http://127.0.0.1:11434",
# "api_key": ""}}. Checked at start-up (gateway.targets).
AICC_EXTRA_UPSTREAMS = env_json("AICC_EXTRA_UPSTREAMS", {})
# Ordered fallbacks per requested model, tried when the upstream is down (breaker open, connection
# failure, 5xx, timeout): {"gpt-4o": [{"model": "gpt-4o-mini"}, {"upstream": "ollama",
# "model": "llama3"}]}. "upstream" defaults to the primary one.
AICC_FALLBACKS = env_json("AICC_FALLBACKS", {})
# Retries of one upstream, only before any byte reached the client and only for connection
# failures, 502 and 503; the backoff doubles from this value.
AICC_UPSTREAM_RETRIES = env_int("AICC_UPSTREAM_RETRIES", 2, minimum=0)
AICC_UPSTREAM_RETRY_BACKOFF_S = env_float("AICC_UPSTREAM_RETRY_BACKOFF_S", 0.05, minimum=0)
AICC_BREAKER_FAILURE_THRESHOLD = env_int("AICC_BREAKER_FAILURE_THRESHOLD", 5, minimum=1)
AICC_BREAKER_RESET_TIMEOUT_S = env_float("AICC_BREAKER_RESET_TIMEOUT_S", 30.0, minimum=0.001)
# How long a process trusts "closed, no failures" without asking Redis: another process's
# opening is seen within this long; in exchange a healthy breaker costs no round trip.
AICC_BREAKER_CLOSED_CACHE_S = env_float("AICC_BREAKER_CLOSED_CACHE_S", 0.25, minimum=0)
AICC_BREAKER_MAX_RESET_TIMEOUT_S = env_float(
    "AICC_BREAKER_MAX_RESET_TIMEOUT_S", 300.0, minimum=0.001
)
# 0 leaves the garbage collector as Python sets it (gateway.gc_tuning).
AICC_GC_GEN0_THRESHOLD = env_int("AICC_GC_GEN0_THRESHOLD", 20000, minimum=0)
AICC_MAX_BODY_BYTES = env_int("AICC_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
# Response cache (gateway.cache): exact-match answers per tenant, in Redis.
AICC_CACHE_ENABLED = env_bool("AICC_CACHE_ENABLED", True)
AICC_CACHE_TTL_S = env_int("AICC_CACHE_TTL_S", 3600, minimum=1)
AICC_CACHE_MAX_ENTRY_BYTES = env_int("AICC_CACHE_MAX_ENTRY_BYTES", 256 * 1024, minimum=1024)
AICC_CACHE_TIMEOUT_S = env_float("AICC_CACHE_TIMEOUT_S", 0.1, minimum=0.001)
AICC_AUTH_FAILURES_PER_MINUTE = env_int("AICC_AUTH_FAILURES_PER_MINUTE", 20, minimum=1)

# --- Operator credentials -------------------------------------------------------------------
# Master keys (comma-separated, each >= 32 random chars, not starting with "aicc_") may use the
# management API across tenants. Deprecated ones still work, with a warning, while rolling over.
AICC_MASTER_KEYS = env_list("AICC_MASTER_KEYS", [])
AICC_DEPRECATED_MASTER_KEYS = env_list("AICC_DEPRECATED_MASTER_KEYS", [])
AICC_MANAGEMENT_API_RATE = env_str("AICC_MANAGEMENT_API_RATE", "120/m")
AICC_LOGIN_RATE = env_str("AICC_LOGIN_RATE", "10/m")

# --- Routing policy -------------------------------------------------------------------------
AICC_POLICY_PATH = Path(env_str("AICC_POLICY_PATH", str(BASE_DIR / "policy" / "default.yaml")))
# Models a policy may route to besides those its own `models` section lists.
AICC_KNOWN_MODELS = env_list("AICC_KNOWN_MODELS", [])

# --- Metering -------------------------------------------------------------------------------
# Redis down: budgets always refuse (503); rate limits admit when this is true, refuse when false.
AICC_RATE_LIMIT_FAIL_OPEN = env_bool("AICC_RATE_LIMIT_FAIL_OPEN", False)
# Forward while the admission runs when the key has ample headroom (gateway.early_forward).
AICC_EARLY_FORWARD = env_bool("AICC_EARLY_FORWARD", True)
# Reserved for a request that names no max_tokens (tokens/minute and the budget's worst case).
AICC_DEFAULT_MAX_OUTPUT_TOKENS = env_int("AICC_DEFAULT_MAX_OUTPUT_TOKENS", 4096, minimum=1)
# A model with no price is refused (its budget cannot be enforced) unless this names a priced
# model whose price it is charged at.
AICC_UNKNOWN_MODEL_PRICE_AS = env_str("AICC_UNKNOWN_MODEL_PRICE_AS", "")
AICC_USAGE_RETENTION_DAYS = env_int("AICC_USAGE_RETENTION_DAYS", 90, minimum=1)
AICC_USAGE_BATCH_SIZE = env_int("AICC_USAGE_BATCH_SIZE", 500, minimum=1)
AICC_USAGE_CLAIM_IDLE_MS = env_int("AICC_USAGE_CLAIM_IDLE_MS", 60000, minimum=1)
AICC_USAGE_DRAIN_BUDGET_S = env_float("AICC_USAGE_DRAIN_BUDGET_S", 1.5, minimum=0)
AICC_BUDGET_WEBHOOK_TIMEOUT_S = env_float("AICC_BUDGET_WEBHOOK_TIMEOUT_S", 5.0, minimum=0.1)

# --- Observability ------------------------------------------------------------------------
# GET /metrics needs "Authorization: Bearer <token>" when set; open when empty (then keep the
# port internal). Multiprocess metrics: PROMETHEUS_MULTIPROC_DIR (environment only, see bin/run).
AICC_METRICS_TOKEN = env_str("AICC_METRICS_TOKEN", "")
AICC_HEALTH_TIMEOUT_S = env_float("AICC_HEALTH_TIMEOUT_S", 2.0, minimum=0.05)
AICC_OLLAMA_URL = env_url("AICC_OLLAMA_URL", "", schemes=("http", "https"), optional=True).rstrip(
    "/"
)
# Langfuse export is on when all three are set.
AICC_LANGFUSE_HOST = env_url(
    "AICC_LANGFUSE_HOST", "", schemes=("http", "https"), optional=True
).rstrip("/")
AICC_LANGFUSE_PUBLIC_KEY = env_str("AICC_LANGFUSE_PUBLIC_KEY", "")
AICC_LANGFUSE_SECRET_KEY = env_str("AICC_LANGFUSE_SECRET_KEY", "")
# Off: traces carry metadata only (model, tokens, cost, latency, status, tenant, correlation id).
AICC_LANGFUSE_INCLUDE_CONTENT = env_bool("AICC_LANGFUSE_INCLUDE_CONTENT", False)
AICC_LANGFUSE_QUEUE_SIZE = env_int("AICC_LANGFUSE_QUEUE_SIZE", 10000, minimum=100)
AICC_LANGFUSE_BATCH_SIZE = env_int("AICC_LANGFUSE_BATCH_SIZE", 100, minimum=1)
AICC_LANGFUSE_FLUSH_INTERVAL_S = env_float("AICC_LANGFUSE_FLUSH_INTERVAL_S", 1.0, minimum=0.05)

# --- Security ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# TLS usually ends at a proxy in front of AICC; turn this on when it does not.
SECURE_SSL_REDIRECT = env_bool("AICC_SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^health", r"^v1/", r"^metrics"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("AICC_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- Everything else --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {"TITLE": "AICC management API", "VERSION": "1.0.0"}

LOGGING_CONFIG = None  # structlog is configured in aicc_site.logging
from aicc_site.logging import configure_logging  # noqa: E402

configure_logging(debug=DEBUG, level=env_str("LOG_LEVEL", "INFO").upper())
