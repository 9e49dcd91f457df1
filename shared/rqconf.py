"""How RQ stores Jobcast's jobs in Redis: with its JSON serializer, everywhere.

RQ pickles a job's function name and arguments by default, and the worker unpickles
whatever job hash it finds on its queue: anyone who can write to Redis could run
code as the worker. With :data:`SERIALIZER` (``rq.serializers.JSONSerializer``) a
job's data, meta and result are JSON, and a pickled job fails to load
(``rq.exceptions.DeserializationError``): the worker records it failed, never
running it (``tests/test_attacks_small.py``).

Every job Jobcast queues has JSON arguments:

* ``worker.runner.run_kind(job_id, kind_name=, kind_args=, token=)``: the kind's
  arguments are the JSON the site checked against the kind's schema (an upload is
  a string), the token a string (``shared/lifecycle/queueing.py``);
* ``worker.runner.release(job_id, kind_name)``;
* ``worker.deliver.deliver(job_id, delivery)``: two strings; its ``Retry`` is a job
  option, stored by RQ as plain fields.

Their results are strings. Each process builds its queue, worker, scheduler and
every ``Job.fetch`` with this one serializer: the web site, the worker (and its
scheduler), the tick, the dev tools and the tests.
"""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer


def rq_queue(name: str, connection: redis.Redis) -> Queue:
    """The RQ queue ``name`` on ``connection`` (a bytes client), with :data:`SERIALIZER`."""
    return Queue(name, connection=connection, serializer=SERIALIZER)
