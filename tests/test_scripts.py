"""The Lua scripts' calling convention (shared/scripts.py): fragments included once,
one JSON argument read by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared import scripts


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
