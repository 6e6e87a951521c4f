"""The fast tier: tests that start no server and no service process and build no model.

A test is `heavy` when it, or a fixture it uses (directly or through other fixtures), refers to
one of the building blocks below: in its own code, in functions nested in it, in imports inside
it, or in the helpers of this test package it calls. So a new test is sorted by what it does,
with no list of tests to keep up to date. In-process stand-ins of the outside world (the 2ch
and Telegram HTTP stand-ins, the local package index) are not heavy: they start in milliseconds.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from types import CodeType

import pytest

HEAVY = frozenset(
    {
        # servers, and the session fixtures that start them or pick the machine's
        "RedisServer",
        "EmbeddedPostgres",
        "redis_server",
        "pg_admin_url",
        # service processes (Celery workers, the gateway, the bot)
        "Worker",
        "Gateway",
        "ServiceProcess",
        "start_worker",
        "start_gateway",
        "start_bot",
        # model builds and conversions
        "make_tiny_gpt2",
        "make_hub_layout_gpt2",
        "make_tiny_classifier",
        "make_biased_gpt2",
        "train_briefly",
        "build_demo_model",
        "ensure_demo_model",
        "ensure_converted",
    }
)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _code_names(code: CodeType) -> set[str]:
    """The names a function's code refers to, with its nested functions' and the words of its
    string constants (a `python -c` script that builds a model is heavy too)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _code_names(const)
        elif isinstance(const, str) and len(const) < 10_000:
            names |= set(_WORD.findall(const)) & HEAVY
    return names


def _refers_to_heavy(obj: object, seen: set[int]) -> bool:
    """Does this function (or class) refer to a heavy building block, itself or through the test
    package's helpers it calls?"""
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if inspect.isclass(obj):
        return any(_refers_to_heavy(member, seen) for member in vars(obj).values() if inspect.isfunction(member))
    obj = inspect.unwrap(obj)  # type: ignore[arg-type]
    code = getattr(obj, "__code__", None)
    if code is None:
        return False
    names = _code_names(code)
    if names & HEAVY:
        return True
    scope = getattr(obj, "__globals__", {})
    return any(
        _refers_to_heavy(scope[name], seen)
        for name in names
        if name in scope
        and (inspect.isfunction(scope[name]) or inspect.isclass(scope[name]))
        and getattr(scope[name], "__module__", "").startswith("tests")
    )


def is_heavy(item: pytest.Item) -> bool:
    fixture_names: Iterable[str] = getattr(item, "fixturenames", ())
    if set(fixture_names) & HEAVY:
        return True
    seen: set[int] = set()
    info = getattr(item, "_fixtureinfo", None)
    for name in fixture_names:
        for definition in info.name2fixturedefs.get(name, ()) if info else ():
            if _refers_to_heavy(definition.func, seen):
                return True
    return _refers_to_heavy(getattr(item, "function", None), seen)


def mark_heavy_tests(items: list[pytest.Item]) -> None:
    for item in items:
        if is_heavy(item):
            item.add_marker(pytest.mark.heavy)
