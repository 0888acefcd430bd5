"""The Lua scripts of the Redis-backed limiter, budgets and circuit breaker, one file each."""

from importlib import resources


def load_script(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
