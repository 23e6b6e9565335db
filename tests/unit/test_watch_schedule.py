"""The schedule's clock (watch/schedule.py): cron and every, windows, a refused run tried again within its
occurrence, and the entries' config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from console.watch_config import ScheduledAction
from watch.book import AlertBook
from watch.schedule import REFUSED_RETRY_S, Due, Scheduler, in_window, next_occurrence


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_cron_is_utc_and_every_counts_from_the_last_start() -> None:
    weekly = ScheduledAction(action="verify-restore", cron="0 3 * * 0")
    assert next_occurrence(weekly, _at("2026-12-03 13:00:00")) == _at("2026-12-06 03:00:00")
    assert next_occurrence(weekly, _at("2026-12-06 03:00:00")) == _at("2026-12-13 03:00:00")
    monthly = ScheduledAction(action="backup-check", cron="0 4 1 * *")
    assert next_occurrence(monthly, _at("2026-12-03 13:00:00")) == _at("2027-01-01 04:00:00")
    every = ScheduledAction.model_validate({"action": "backup", "every": "6h"})
    assert next_occurrence(every, 1000.0) == 1000.0 + 6 * 3600


def test_windows_including_one_across_midnight() -> None:
    day = ScheduledAction.model_validate({"action": "drill", "cron": "0 10 * * 2", "window": "10:00-11:00"})
    assert in_window(day, _at("2026-12-01 10:30:00")) and not in_window(day, _at("2026-12-01 11:00:00"))
    night = ScheduledAction.model_validate({"action": "drill", "every": "1d", "window": "23:00-02:00"})
    assert in_window(night, _at("2026-12-01 23:30:00")) and in_window(night, _at("2026-12-02 01:59:00"))
    assert not in_window(night, _at("2026-12-02 12:00:00"))


def test_bad_entries_are_config_errors() -> None:
    with pytest.raises(ValidationError, match="exactly one of cron, every"):
        ScheduledAction(action="drill")
    with pytest.raises(ValidationError, match="cron"):
        ScheduledAction(action="drill", cron="every tuesday")
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        ScheduledAction.model_validate({"action": "drill", "every": "1d", "window": "10-11"})


def test_a_refused_run_is_tried_again_only_while_its_occurrence_lasts(tmp_path: Path) -> None:
    from console.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "config.toml")
    entry = ScheduledAction.model_validate({"action": "drill", "cron": "0 10 * * 2", "window": "10:00-11:00"})
    scheduler = Scheduler(config, AlertBook(tmp_path), None, lambda *a: None, _at("2026-12-01 09:00:00"))
    due = Due("0:drill", entry, _at("2026-12-01 10:00:00"))
    assert scheduler._may_retry(due, _at("2026-12-01 10:00:00"))  # 10:05 is still in the window
    assert not scheduler._may_retry(due, _at("2026-12-01 10:58:00"))  # 11:03 would be outside it
    assert REFUSED_RETRY_S == 300


def test_a_restarted_watcher_keeps_each_entrys_last_start(tmp_path: Path) -> None:
    from console.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "config.toml").model_copy(deep=True)
    entry = ScheduledAction.model_validate({"action": "backup", "every": "1h"})
    watch = config.watch.model_copy(update={"schedule": [entry]})
    config = config.model_copy(update={"watch": watch})
    book = AlertBook(tmp_path)
    book.put("schedule:0:backup", str(1000.0))
    scheduler = Scheduler(config, book, None, lambda *a: None, now=5000.0)
    assert scheduler.next_due() == 1000.0 + 3600  # not "an hour from now": the missed run happens once
