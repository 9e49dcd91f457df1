"""What Jobcast relies on in RQ, checked fast: an RQ upgrade that changes it fails here.

Jobcast overrides one RQ method (``get_heartbeat_ttl``) and otherwise uses
RQ's hooks and public API by keyword; the recorded signatures below are those
of RQ 3.0. When one changes, read RQ's change and update worker/recovery.py.
"""

from __future__ import annotations

import inspect

import pytest
import redis
from rq import Queue, SimpleWorker, Worker
from rq.command import send_stop_job_command
from rq.job import Job
from rq.worker.base import BaseWorker

from shared.config import Config, ConfigError
from tests.support import TEST_PROGRESS_TOKEN, TEST_SECRET_KEY, free_port
from worker.recovery import (
    LOST_MESSAGE,
    JobcastSimpleWorker,
    JobcastWorker,
    Recovery,
    Timing,
    failure_message,
)

# Every RQ method a Jobcast worker class overrides, with RQ's signature.
OVERRIDDEN = {
    "get_heartbeat_ttl": "(self, job: 'Job', working_time: 'float' = 0.0) -> 'int'",
}

# The RQ entry points Jobcast calls by keyword (worker/recovery.py, worker/__main__.py;
# the serializer everywhere: shared/rqconf.py).
USED = {
    (BaseWorker, "__init__"): (
        "exception_handlers", "maintenance_interval", "worker_ttl", "log_job_description",
        "job_monitoring_interval", "work_horse_killed_handler", "serializer"),
    (BaseWorker, "work"): ("burst", "logging_level", "with_scheduler"),
    (BaseWorker, "find_by_key"): ("worker_key", "connection", "serializer"),
    (BaseWorker, "all"): ("queue", "serializer"),
    (Queue, "__init__"): ("connection", "serializer"),
    (Job, "fetch"): ("connection", "serializer"),
    (Job, "fetch_many"): ("connection", "serializer"),
    (BaseWorker, "get_current_executions"): ("refresh",),
    (BaseWorker, "handle_work_horse_killed"): ("job", "retpid", "ret_val", "rusage"),
}


def test_stopping_a_job_takes_the_serializer() -> None:
    assert "serializer" in inspect.signature(send_stop_job_command).parameters


def rq_method(cls: type, name: str) -> object:
    """``name`` as defined by the nearest RQ class above the Jobcast class ``cls``."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("rq.") and name in vars(base):
            return vars(base)[name]
    raise AssertionError(f"{cls.__name__}.{name} overrides nothing in RQ")


@pytest.mark.parametrize("cls", [JobcastWorker, JobcastSimpleWorker])
def test_overridden_rq_methods_keep_their_recorded_signature(cls: type) -> None:
    ours = {name for name, value in vars(cls).items()
            if callable(value) and not name.startswith("__")
            and any(name in vars(base) for base in cls.__mro__[1:]
                    if base.__module__.startswith("rq."))}
    assert ours == set(OVERRIDDEN), "record every overridden RQ method in OVERRIDDEN"
    for name, recorded in OVERRIDDEN.items():
        theirs = rq_method(cls, name)
        assert str(inspect.signature(theirs)) == recorded, f"RQ changed {name}"  # type: ignore[arg-type]
        # and ours still accepts what RQ passes
        assert (list(inspect.signature(getattr(cls, name)).parameters)
                == list(inspect.signature(theirs).parameters))  # type: ignore[arg-type]


@pytest.mark.parametrize("owner, name", list(USED))
def test_rq_entry_points_still_take_the_arguments_jobcast_passes(owner: type, name: str) -> None:
    params = inspect.signature(getattr(owner, name)).parameters
    missing = [arg for arg in USED[(owner, name)] if arg not in params]
    assert not missing, f"RQ {owner.__name__}.{name} no longer takes {missing}"


def test_executions_live_a_lease_past_each_heartbeat() -> None:
    timing = Timing(60)
    assert (timing.beat, timing.lease) == (15, 45)
    assert Timing(3).beat == 1 and Timing(3).lease == 2
    unused = redis.Redis(port=free_port())  # Job.create needs one; nothing connects
    job = Job.create("tests.jobs.noop", connection=unused, timeout=30)
    fork = JobcastWorker.__new__(JobcastWorker)
    fork.lease = 5
    assert fork.get_heartbeat_ttl(job, working_time=29) == 5
    simple = JobcastSimpleWorker.__new__(JobcastSimpleWorker)
    simple.lease = 5
    assert simple.get_heartbeat_ttl(job) == 35  # no heartbeat during an in-process job
    assert issubclass(JobcastWorker, Worker) and issubclass(JobcastSimpleWorker, SimpleWorker)


def config(**overrides: object) -> Config:
    return Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                  WORKER_TOKEN="w", **overrides)


def test_worker_hooks_follow_abandoned_after() -> None:
    kwargs = Recovery(config(ABANDONED_AFTER="8")).worker_kwargs(worker_ttl=60)
    assert kwargs["job_monitoring_interval"] == kwargs["maintenance_interval"] == 2
    assert kwargs["worker_ttl"] == 17  # an idle worker wakes every worker_ttl - 15 = 2 s
    assert callable(kwargs["work_horse_killed_handler"])
    assert len(kwargs["exception_handlers"]) == 1


def test_failure_messages() -> None:
    from rq.exceptions import AbandonedJobError

    assert failure_message(AbandonedJobError, AbandonedJobError()) == LOST_MESSAGE
    assert failure_message(TypeError, TypeError("bad")) == "TypeError: bad"
    assert failure_message(ImportError, ImportError()) == "ImportError"


def test_report_retry_window_leaves_room_in_the_job_timeout() -> None:
    cfg = config()
    assert cfg.REPORT_RETRY_SECONDS == 10 and cfg.JOB_TIMEOUT == 30
    assert config(REPORT_RETRY_SECONDS="14.9").REPORT_RETRY_SECONDS == 14.9
    for retry, timeout in (("15", "30"), ("30", "30"), ("2", "3")):
        with pytest.raises(ConfigError, match="REPORT_RETRY_SECONDS .* JOB_TIMEOUT / 2"):
            config(REPORT_RETRY_SECONDS=retry, JOB_TIMEOUT=timeout)
    assert config(REPORT_RETRY_SECONDS="60", JOB_TIMEOUT="121").JOB_TIMEOUT == 121
