"""Jobcast from Python: start and watch jobs (:class:`Client`), run external kinds (:class:`Worker`).

    from jobcast_client import Client
    with Client("https://jobs.example.org", api_key) as jobs:
        job = jobs.start("resize", {"url": "https://example.org/cat.png"})
        final = jobs.wait(job.id, timeout=300)

    from jobcast_client import Worker
    def resize(ctx, url):
        ctx.progress(1, total=2, message="downloading")
        ...
        return {"width": 640}
    Worker("https://jobs.example.org", worker_token, kinds={"resize": resize}).run()
"""

from jobcast_client.client import Client
from jobcast_client.context import (
    CancelRequested,
    JobContext,
    JobLost,
    PermanentFailure,
    WorkerStopping,
)
from jobcast_client.errors import (
    Conflict,
    Forbidden,
    InvalidArguments,
    JobcastError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from jobcast_client.models import Job, LogLine
from jobcast_client.worker import Worker

__all__ = [
    "CancelRequested", "Client", "Conflict", "Forbidden", "InvalidArguments", "Job", "JobContext",
    "JobLost", "JobcastError", "LogLine", "NotFound", "PermanentFailure", "QuotaExceeded",
    "RateLimited", "TooLarge", "Unauthorized", "Unavailable", "WaitTimeout", "Worker",
    "WorkerStopping",
]
__version__ = "0.1.0"
