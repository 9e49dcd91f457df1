"""Jobcast benchmark: ``make bench`` (``python -m bench``), not part of ``make test``.

Starts the real stack (Redis, gunicorn site, RQ workers) on free ports and
prints one table of measurements; ``--write docs/benchmarks.md`` keeps it.
"""
