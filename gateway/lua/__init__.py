"""The Lua scripts of the Redis-backed limiter, budgets, metering and circuit breaker, one file
each."""

from importlib import resources


def load_script(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def compose_script(main: str, *parts: str, prelude: str | None = None) -> str:
    """`main` with each of `parts` in front of it as a local function named after its file
    (rate_admit.lua -> `rate_admit(KEYS, ARGV)`), so one script, one round trip, runs what
    would otherwise take one each, atomically. A part's top-level `return` becomes the
    function's. `prelude`, if given, runs between the functions and `main`, at top level
    (e.g. reading the argument layout the main scripts share)."""
    functions = [
        f"local function {part.removesuffix('.lua')}(KEYS, ARGV)\n{load_script(part)}\nend\n"
        for part in parts
    ]
    shared = load_script(prelude) if prelude is not None else ""
    return "".join(functions) + shared + load_script(main)
