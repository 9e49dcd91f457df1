"""The Lua scripts' calling convention (shared/scripts.py): KEYS, one JSON argument
read by name, headers that name its fields, fragments included once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared import scripts
from shared.protocol import LOG_START, STATES, ProgressUpdate, new_id

SCRIPTS = sorted(path.stem for path in scripts.LUA_DIR.glob("*.lua"))
FRAGMENTS = sorted(path.stem for path in scripts.LIB_DIR.glob("*.lua"))
FIELD_USE = re.compile(r"\ba\.([a-z_]+)")
FIELD_DOC = re.compile(r"^--\s+a\.([a-z_]+)", re.MULTILINE)


def header(text: str) -> str:
    """The comment lines a file starts with."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--") or line.startswith("--!"):
            break
        lines.append(line)
    return "\n".join(lines)


def code(text: str) -> str:
    """The lines that are not comments, each cut before a trailing comment."""
    return "\n".join(line.split("--", 1)[0] for line in text.splitlines()
                     if not line.lstrip().startswith("--"))


def documented(text: str) -> set[str]:
    """The JSON fields a header names (lines ``--   a.<name>  what it is``)."""
    return set(FIELD_DOC.findall(header(text)))


def test_there_are_scripts_and_the_shared_fragments() -> None:
    assert {"update_job", "claim_external", "sweep_leases", "reset_job", "create_job",
            "renew_lease", "claim_schedule", "set_highlighted", "query_jobs"} <= set(SCRIPTS)
    assert {"transition", "lease"} <= set(FRAGMENTS)


@pytest.mark.parametrize("path", sorted(scripts.LUA_DIR.rglob("*.lua")), ids=lambda p: p.name)
def test_no_lua_file_spells_a_state_name(path: Path) -> None:
    """State names come from shared.protocol in the JSON argument, never from a script."""
    text = code(path.read_text(encoding="utf-8"))
    for state in STATES:
        assert f"'{state}'" not in text and f'"{state}"' not in text, (path.name, state)
        assert f"'{state} " not in text and f" {state}'" not in text, (path.name, state)
    assert f"'{LOG_START}'" not in text, path.name  # shared.protocol.LOG_START comes as a.log_start
    assert "-100" not in text, path.name  # the timeline's length comes as a.timeline_max
    assert "state:" not in text and ":timeline" not in text, path.name  # key names: from keys.py


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_takes_keys_and_one_json_argument_its_header_names(name: str) -> None:
    """Header: the KEYS, ARGV[1] as one JSON object, each field it reads, the answer."""
    text = (scripts.LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    top = header(text)
    assert top.startswith(f"-- {name}.lua: "), name
    assert "KEYS[1]" in top and "ARGV[1]" in top and "one JSON object" in top, name
    assert "Returns" in top, name
    body = code(scripts.source(name))
    assert re.findall(r"ARGV\[?\w*\]?", body) == ["ARGV[1]"], name
    assert body.lstrip().startswith("local a = cjson.decode(ARGV[1])"), name
    used = set(FIELD_USE.findall(body))  # the fragments' fields too: the script's caller sends them
    assert used == documented(text), (name, used ^ documented(text))


@pytest.mark.parametrize("name", FRAGMENTS)
def test_each_fragment_names_the_fields_it_reads_and_who_includes_it(name: str) -> None:
    text = (scripts.LIB_DIR / f"{name}.lua").read_text(encoding="utf-8")
    top = header(text)
    assert top.startswith(f"-- lib/{name}.lua: ") and f"--! include {name}" in top, name
    used = set(FIELD_USE.findall(code(text)))
    assert used == documented(text), (name, used ^ documented(text))
    users = [script for script in SCRIPTS if name in scripts.includes(script)]
    assert len(users) >= 2, (name, users)  # shared logic, or it would stay in its script
    for user in users:
        assert f"{user}" in top, (name, user)
        assert documented((scripts.LUA_DIR / f"{user}.lua").read_text()) >= used, (name, user)


def test_the_transition_is_written_once() -> None:
    """The four scripts that change a job's state include one transition, and spell none."""
    for name in ("update_job", "claim_external", "sweep_leases", "reset_job"):
        text = code((scripts.LUA_DIR / f"{name}.lua").read_text(encoding="utf-8"))
        assert "transition" in scripts.includes(name), name
        for command in ("RPUSH", "LTRIM", "HINCRBY', bk", "completed_at"):
            assert command not in text, (name, command)
        assert scripts.source(name).count("local function transition(") == 1, name
        assert not scripts.INCLUDE.search(scripts.source(name)), name


@pytest.fixture
def lua_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """shared/scripts.py reading scripts from an empty directory (its caches cleared)."""
    (tmp_path / "lib").mkdir()
    monkeypatch.setattr(scripts, "LUA_DIR", tmp_path)
    monkeypatch.setattr(scripts, "LIB_DIR", tmp_path / "lib")
    scripts.source.cache_clear()
    scripts.fragment.cache_clear()
    yield tmp_path
    scripts.source.cache_clear()
    scripts.fragment.cache_clear()


def test_an_include_line_is_replaced_by_the_fragment(lua_dir: Path) -> None:
    (lua_dir / "lib" / "twice.lua").write_text(
        "-- lib/twice.lua\nlocal function twice(a)\n  return a.n * 2\nend\n")
    (lua_dir / "demo.lua").write_text(
        "-- demo.lua\nlocal a = cjson.decode(ARGV[1])\n--! include twice\nreturn twice(a)\n")
    text = scripts.source("demo")
    assert text == ("-- demo.lua\nlocal a = cjson.decode(ARGV[1])\n-- lib/twice.lua\n"
                    "local function twice(a)\n  return a.n * 2\nend\nreturn twice(a)\n")
    assert scripts.includes("demo") == ["twice"]
    # only a line of its own, exactly so, includes: a mention in a comment does not
    (lua_dir / "other.lua").write_text("-- reads like --! include twice, but is not one\nreturn 1\n")
    assert "function twice" not in scripts.source("other")


def test_a_bad_include_is_refused(lua_dir: Path) -> None:
    (lua_dir / "missing.lua").write_text("--! include nowhere\nreturn 1\n")
    with pytest.raises(scripts.ScriptSourceError, match="nowhere"):
        scripts.source("missing")
    (lua_dir / "lib" / "one.lua").write_text("local function one() return 1 end\n")
    (lua_dir / "twice.lua").write_text("--! include one\n--! include one\nreturn one()\n")
    with pytest.raises(scripts.ScriptSourceError, match="twice"):
        scripts.source("twice")
    (lua_dir / "lib" / "nested.lua").write_text("--! include one\n")
    (lua_dir / "nests.lua").write_text("--! include nested\nreturn one()\n")
    with pytest.raises(scripts.ScriptSourceError, match="nested"):
        scripts.source("nests")


def test_an_included_fragment_runs_with_the_named_fields(lua_dir: Path,
                                                         redis_client: redis.Redis) -> None:
    (lua_dir / "lib" / "twice.lua").write_text("local function twice(a) return a.n * 2 end\n")
    (lua_dir / "demo.lua").write_text(
        "local a = cjson.decode(ARGV[1])\n--! include twice\n"
        "return {twice(a), redis.call('GET', KEYS[1]), a.text, #a.list}\n")
    redis_client.set("k", "v")
    script = scripts.register(redis_client, "demo")
    text = 'quote " backslash \\ newline \n tab \t and ünïcödé ✓'
    assert scripts.run(script, ["k"], {"n": 21, "text": text, "list": ["x", "y"]}) == [
        42, "v", text, 2]
    answers = scripts.run_each(redis_client, script, [(["k"], {"n": n, "text": "", "list": []})
                                                      for n in range(3)])
    assert [answer[0] for answer in answers] == [0, 2, 4]


def test_the_json_argument_is_compact_and_keeps_utf8() -> None:
    assert scripts.encode({"a": 1, "b": ["é", "x y"]}) == '{"a":1,"b":["é","x y"]}'


# Which script a run was of, by its text.
def _by_text() -> dict[str, str]:
    return {scripts.source(name): name for name in SCRIPTS}


def test_every_field_a_caller_sends_is_in_its_scripts_header(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drive every caller; each script's JSON argument holds only fields its header
    names, and every field its header names is sent by some call."""
    from types import SimpleNamespace

    from shared.after import Waits
    from shared.batches import create_batch
    from shared.claimqueue import ExternalQueues
    from shared.concurrency import ConcurrencyLimits
    from shared.config import Config
    from shared.fairshare import FairShare
    from shared.jobquery import JobFilter, JobQuery
    from shared.kinds.highlight.snippets import SnippetStore
    from shared.kinds.policy import Concurrency, Policy
    from shared.quotas import Quotas, Usage, count_for_job
    from shared.schedules import ScheduleStore
    from shared.store import JobStore
    from shared.unique import UniqueKeys
    from shared.uploads import UploadStore

    names = _by_text()
    sent: dict[str, set[str]] = {}
    real_run, real_run_on, real_create = scripts.run, scripts.run_on, JobStore._create_call

    def note(script: Any, fields: Any) -> None:
        sent.setdefault(names[script.script], set()).update(fields)

    def run(script: Any, keys: Any, fields: Any, client: Any = None) -> Any:
        note(script, fields)
        return real_run(script, keys, fields, client)

    def run_on(connection: Any, script: Any, calls: Any) -> Any:
        for _keys, fields in calls:
            note(script, fields)
        return real_run_on(connection, script, calls)

    def create_call(self: JobStore, *args: Any) -> dict[str, Any]:
        call = real_create(self, *args)
        sent.setdefault("create_job", set()).update(json.loads(call["args"][0]))
        return call

    monkeypatch.setattr(scripts, "run", run)
    monkeypatch.setattr(scripts, "run_on", run_on)
    monkeypatch.setattr(JobStore, "_create_call", create_call)

    store = JobStore(redis_client, ttl=3600)
    job = new_id()
    store.create(job)
    store.create_many([(new_id(), "demo", "", 1.0)])
    store.apply(ProgressUpdate(job, 10, seq=1, current=1, total=10, log=("a line",)), attempt=1)
    store.apply_many([(ProgressUpdate(job, 100, "succeeded", result={"ok": True}), None)])
    store.reset(job, ("succeeded",))
    store.queue_retry(job, 2)
    store.apply(ProgressUpdate(job, 0, "failed", retry=False))  # a.jitter, a.no_retry
    store.request_cancel(job, 10.0)
    store.mark_stalled(now=10**10)
    _batch, _children = create_batch(store, "demo", [{}])
    queues = ExternalQueues(redis_client, lease_seconds=1)
    other = new_id()
    store.create(other, kind="ext", external="1")
    queues.push(other, "ext")
    assert queues.claim(["ext"], "w1") is not None
    queues.renew_many([(other, 1), (other, None)])
    queues.sweep(now=10**10)
    schedules = ScheduleStore(redis_client)
    schedule = schedules.create("* * * * *", "demo", {})
    schedules.claim_due(now=(schedule.next_run or 0) + 1)
    snippets = SnippetStore(redis_client)
    snippet = snippets.create("print(1)", "python", job)
    snippets.set_highlighted(snippet.snippet_id, "<pre>1</pre>", "python")
    JobQuery(redis_client).count(JobFilter(state="queued", q="x"))
    fair = FairShare(redis_client)
    held = new_id()
    store.create(held)
    fair.admit("rq:q", "t", [other, held])
    fair.release(other)
    quotas = Quotas(Config(environ={}, SECRET_KEY="k", PROGRESS_TOKEN="p", WORKER_TOKEN="w"),
                    redis_client)
    quotas.take(quotas.payers("s-u-1", "a-127.0.0.1"), Usage(jobs=1, job_bytes=9, batch_items=2))
    paid = new_id()
    store.create(paid, tenant="a-127.0.0.1")
    count_for_job(redis_client, paid, 100)
    uploads = UploadStore(redis_client, ttl=3600)
    uploads.put(paid, {"file": "a,b"}, ["a-127.0.0.1"], "1")
    uploads.drop(paid)
    limited = SimpleNamespace(policy=Policy(concurrency=Concurrency(1, "a")))
    limits = ConcurrencyLimits(redis_client, {"lim": limited})  # type: ignore[dict-item]
    first, second = new_id(), new_id()
    for job_id in (first, second):
        store.create(job_id, kind="lim", args='{"a": "x"}')
    assert limits.gate([first, second]).held == [second]
    limits.release([first])
    limits.heal()
    waits, unique = Waits(redis_client, ttl=60), UniqueKeys(redis_client, ttl=60)
    waiter = new_id()
    store.create(waiter, initial="waiting", after=held, waiting_for=held)
    waits.register([waiter], [held])
    waits.ended([(held, "succeeded")])
    unique.claim("jobcast:unique:demo:x", waiter)
    unique.release([waiter])
    from shared.pause import KindPause  # a paused kind's jobs are held back (#27)
    pause = KindPause(redis_client)
    pause.pause("demo")
    pause.hold([held], ["demo"])
    from shared.fleet import Fleet, RqSeen  # the workers seen (#28)
    fleet = Fleet(redis_client, "jobcast", ["ext"])
    fleet.claiming("w1", ["ext"], other)
    fleet.note_rq([RqSeen("r1", "idle", "", 1.0, ("jobcast",))])
    from shared.history import DepthSampler  # the dashboard's history (#28)
    DepthSampler(redis_client).sample()
    scripts.run_each(redis_client, scripts.register(redis_client, "count_common"),  # (#28,
                     [(["jobcast:idx:state:queued", "jobcast:idx:kind:demo"],  # Redis 6.2)
                       {"limit": 1000})])

    assert set(sent) == set(SCRIPTS)
    for name, fields in sent.items():
        wanted = documented((scripts.LUA_DIR / f"{name}.lua").read_text(encoding="utf-8"))
        assert fields == wanted, (name, fields ^ wanted)


def test_text_goes_through_the_json_argument_unchanged(redis_client: redis.Redis) -> None:
    """Quotes, backslashes, control characters and any Unicode, in every text field."""
    from shared import keys
    from shared.store import JobStore

    store = JobStore(redis_client, ttl=3600)
    job = new_id()
    store.create(job)
    text = 'a "quote", a \\ backslash, a\nnewline, \t, \x00, é, ✓, 🎉, </script>'
    applied = store.apply(ProgressUpdate(job, 5, message=text, stage=text[:20], log=(text, ""))).state
    assert applied is not None and applied.log is not None
    assert [line.text for line in applied.log.lines] == [text, ""]
    stored = store.get(job)
    assert stored is not None and stored.message == text and stored.stage == text[:20]
    done = store.apply(ProgressUpdate(job, 100, "succeeded", result={"text": text, "n": 2**53 - 1})).state
    assert done is not None and done.result == {"text": text, "n": 2**53 - 1}
    stored = store.get(job)
    assert stored is not None and stored.result == done.result
    assert redis_client.xrange(keys.job_log_key(job))[0][1] == {"text": text}


def test_the_timeline_keeps_its_newest_entries_and_expires_with_the_job(
        redis_client: redis.Redis) -> None:
    """The transition (lib/transition.lua) trims to shared.store.TIMELINE_MAX."""
    from shared import keys
    from shared.store import TIMELINE_MAX, JobStore

    store = JobStore(redis_client, ttl=3600)
    job = new_id()
    store.create(job)
    for _ in range(TIMELINE_MAX // 3 + 1):
        store.apply(ProgressUpdate(job, 1))
        store.finish(job, "failed")
        store.reset(job, ("failed",))
    entries = redis_client.lrange(keys.job_timeline_key(job), 0, -1)
    assert len(entries) == TIMELINE_MAX
    assert [entry.split(" ")[0] for entry in entries[-3:]] == ["running", "failed", "queued"]
    assert 0 < redis_client.ttl(keys.job_timeline_key(job)) <= 3600
    assert redis_client.zscore(keys.state_index("queued"), job) is not None
    assert all(redis_client.zscore(keys.state_index(state), job) is None
               for state in ("running", "failed"))
