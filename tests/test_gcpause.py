"""The web process's GC hook (website/gcpause.py): survivors of a full collection
are frozen, and every period one full collection walks the whole heap again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from website.gcpause import GcPauses


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pauses() -> Iterator[tuple[GcPauses, Clock]]:
    clock = Clock()
    hook = GcPauses(300.0, clock=clock)
    hook.install()
    try:
        yield hook, clock
    finally:
        hook.uninstall()


def test_full_collections_freeze_their_survivors_and_thaw_once_a_period(
        pauses: tuple[GcPauses, Clock]) -> None:
    hook, clock = pauses
    assert hook in gc.callbacks and gc.get_freeze_count() > 0  # what was loaded: frozen
    kept = [[i] for i in range(1000)]  # new long-lived objects
    gc.collect(2)
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)  # the survivors joined the frozen heap
    gc.collect(1)  # not a full collection: nothing changes
    assert gc.get_freeze_count() == frozen
    clock.now += 301
    gc.collect(2)  # due: thawed, so the next full collection walks everything
    assert gc.get_freeze_count() == 0 and not hook.frozen
    gc.collect(2)
    assert gc.get_freeze_count() > 0 and hook.frozen
    del kept


def test_cyclic_garbage_among_frozen_objects_is_freed_after_the_thaw(
        pauses: tuple[GcPauses, Clock]) -> None:
    import weakref

    hook, clock = pauses

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    alive = weakref.ref(node)
    gc.collect(2)  # survives (still referenced) and is frozen
    del node
    gc.collect(2)
    assert alive() is not None  # frozen garbage waits for the thaw
    clock.now += 301
    gc.collect(2)  # thaws
    gc.collect(2)  # walks the whole heap
    assert alive() is None


def test_zero_leaves_the_collector_alone() -> None:
    from shared.config import Config

    assert Config(environ={"GC_FULL_EVERY": "0", "JOBCAST_ENV": "development"}).GC_FULL_EVERY == 0
