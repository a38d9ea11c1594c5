"""The server's cap on glibc's malloc arenas (see bench/soak.py for what it changes)."""

from __future__ import annotations

import platform

import pytest

from coplane.server import limit_malloc_arenas

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's")


@glibc
def test_the_arenas_are_capped_when_the_user_has_not_chosen() -> None:
    assert limit_malloc_arenas({}) is True


def test_a_malloc_arena_max_the_user_set_is_left_alone() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False
