#!/bin/sh
# One process of the Procfile (`honcho start`, `make run`): dev/proc.py in the
# project's virtualenv. On a clone where `make setup` never ran there is none:
# say so in one line. Only the web process says it; the others wait, and honcho
# stops them when the web process exits (alone, they say it after the wait).
python="${JOBCAST_PYTHON:-.venv/bin/python}"
if [ ! -x "$python" ]; then
    [ "$1" = web ] || sleep 3
    echo "Jobcast: there is no virtualenv at .venv yet: run 'make setup' once (or 'make run'), then 'honcho start'" >&2
    exit 1
fi
exec "$python" -m dev.proc "$@"
