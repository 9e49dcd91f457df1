"""An external kind for tests/test_client_python.py (named in its stack's JOB_KINDS): jobs
the Python library's workers run (``jobcast_client.Worker``)."""

from __future__ import annotations

from shared.kinds import external_kind

PYCLIENT = external_kind(
    "pyclient", module=__name__, title="Python client test",
    description="Run by jobcast_client.Worker in tests: counts to n, logging each step.",
    args={"type": "object", "required": ["n"],
          "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 100000},
                         "tag": {"type": "string", "maxLength": 40}}})
