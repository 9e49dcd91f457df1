"""``python -m bench.coldworker [--name N]``: the worker without preloading, for the bench only.

The product's worker always imports its job modules (and warms Pygments) once
in the parent before it forks work horses (``worker.__main__.preload_jobs``).
To measure what that saves, the bench runs this instead: the same
``python -m worker`` with that step skipped, so every forked horse imports
what its job needs itself. It takes the worker's arguments.
"""

from __future__ import annotations

import sys
from unittest import mock

import worker.__main__ as worker_main
from shared.config import Config


def skip_preload(cfg: Config, extra: list[str] | None = None) -> None:
    """Import nothing up front (stands in for ``worker.__main__.preload_jobs``)."""


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m worker`` with ``argv``, its preloading step skipped."""
    with mock.patch.object(worker_main, "preload_jobs", skip_preload):
        return worker_main.main(argv)


if __name__ == "__main__":
    sys.exit(main())
