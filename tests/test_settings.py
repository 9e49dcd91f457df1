"""The table of settings (shared/settings.py) and how Config reads it."""

from __future__ import annotations

import pytest

from shared.config import Config, ConfigError
from shared.settings import CONCERNS, SETTINGS, Settings

BASE = {"SECRET_KEY": "s", "PROGRESS_TOKEN": "t", "WORKER_TOKEN": "w"}


def test_every_setting_belongs_to_one_concern_and_each_concern_is_one_block() -> None:
    concerns = [s.concern for s in SETTINGS]
    assert set(concerns) == set(CONCERNS)
    blocks = [c for i, c in enumerate(concerns) if i == 0 or concerns[i - 1] != c]
    assert blocks == list(CONCERNS)  # declared grouped, in the order of CONCERNS
    assert all(s.meaning and s.name.isupper() for s in SETTINGS)


def test_a_deployment_sets_a_handful() -> None:
    assert {s.name for s in SETTINGS if s.deploy} == {
        "SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN", "OPS_TOKEN", "REDIS_URL", "WEB_BIND",
        "SITE_URL", "TRUSTED_PROXIES", "SOCKETIO_MESSAGE_QUEUE"}


def test_every_setting_is_an_attribute_of_its_declared_type() -> None:
    cfg = Config(environ={"JOBCAST_ENV": "development"})
    assert set(cfg.as_dict()) == {s.name for s in SETTINGS}
    for setting in SETTINGS:
        assert type(getattr(cfg, setting.name)) is type(setting.default), setting.name
    assert isinstance(Config.JOB_TIMEOUT, type(Settings.JOB_TIMEOUT))  # the class holds the table


def test_string_overrides_are_parsed_and_others_taken_as_they_are() -> None:
    cfg = Config(environ=BASE, JOB_TIMEOUT="45", PORT="6001", MAX_ATTEMPTS=7,
                 TRUSTED_HOSTS=["given.example"])
    assert cfg.JOB_TIMEOUT == 45 and cfg.MAX_ATTEMPTS == 7
    assert cfg.WEB_BIND == "127.0.0.1:6001" and cfg.SITE_URL == "http://127.0.0.1:6001"
    assert cfg.TRUSTED_HOSTS == ["given.example"]
    with pytest.raises(ConfigError, match="JOB_TIMEOUT must be an integer"):
        Config(environ=BASE, JOB_TIMEOUT="soon")


@pytest.mark.parametrize("text, on", [("1", True), ("on", True), ("0", False), ("off", False),
                                      ("FALSE", False), ("", False), (None, True)])
def test_access_log_is_a_flag(text: str | None, on: bool) -> None:
    env = BASE if text is None else dict(BASE, ACCESS_LOG=text)
    assert Config(environ=env).ACCESS_LOG is on


def test_a_flag_that_is_neither_is_refused() -> None:
    with pytest.raises(ConfigError, match="ACCESS_LOG must be 1 or 0"):
        Config(environ=dict(BASE, ACCESS_LOG="maybe"))


def test_the_worker_role_derives_no_site_url() -> None:
    worker = Config(environ={"PROGRESS_TOKEN": "t"}, role="worker")
    assert worker.SITE_URL == "" and worker.PROGRESS_URL == ""
    web = Config(environ=dict(BASE, SITE_URL="https://jobs.example.com/"))
    assert web.PROGRESS_URL == "https://jobs.example.com/api/progress"
    assert web.TRUSTED_HOSTS == ["jobs.example.com"]
