"""Short garbage-collection pauses for a web process holding many connections.

CPython's full (generation 2) collection walks every tracked object. A web
process holding 1,000 Socket.IO connections has a large heap, and under a few
hundred callbacks a second a full collection came every 4 s and stopped the
event loop for 100–150 ms (measured with ``gc.callbacks``), which was the whole
p99 of the callback → client latency under load (docs/scaling.md).

:class:`GcPauses` keeps the heap that survived a full collection out of the
next ones (``gc.freeze()`` after each), so they walk only what was promoted
since; every ``full_every`` seconds it lets one full collection walk the
whole heap again (``gc.unfreeze()``), so cyclic garbage among long-lived
objects is still freed, with one long pause per period instead of one every
few seconds. Installed by gunicorn's ``post_worker_init`` (``gunicorn.conf.py``)
in the web worker only, never by ``create_app``; ``GC_FULL_EVERY=0`` leaves
CPython's collector as it is.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class GcPauses:
    """A ``gc.callbacks`` hook: freeze after each full collection, unfreeze every period."""

    def __init__(self, full_every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every = full_every
        self.clock = clock
        self.last_full = clock()
        self.frozen = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """After a generation-2 collection: freeze the survivors, or thaw them when due."""
        if phase != "stop" or info.get("generation") != 2:
            return
        now = self.clock()
        if self.frozen and now - self.last_full >= self.full_every:
            gc.unfreeze()  # the next full collection walks the whole heap
            self.frozen = False
            self.last_full = now
        else:
            gc.freeze()
            self.frozen = True

    def install(self) -> None:
        """Start with what the process loaded before serving frozen, and hook in."""
        gc.freeze()
        self.frozen = True
        gc.callbacks.append(self)
        log.info("gc: full collections walk the whole heap every %s s", self.full_every)

    def uninstall(self) -> None:
        """Unhook and thaw everything (tests)."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)
        gc.unfreeze()
        self.frozen = False
