"""The action pipeline itself (console/runner.py), with actions of the test's own: what ends how, with
which exit code, what reaches the journal, when the rollback runs.  No cluster: these actions take no
lock (the lock's path is the end-to-end tests' business) and touch nothing but the journal."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from console.action import Action, Outcome, Plan, param
from console.config import Config, load_config
from console.errors import ActionFailed, ExitCode, OpsError, Refused, UsageError, Verdict
from console.events import Check, Event, Finished, PlanItem
from console.journal import Journal
from console.runner import Run, Runner, read_only_refusal, yes
from tests.conftest import ROOT


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return load_config(ROOT / "config.toml")


@dataclass(frozen=True)
class FakeParams:
    fail_at: str = param("--fail-at", "where to fail", "")
    force: bool = False


class Fake(Action[FakeParams]):
    """Records its phases; fails where told; its one change is journaled before it is 'made'."""

    name = "fake"
    title = "Fake"
    description = "a test's action"
    Params = FakeParams
    takes_lock = False

    def __init__(self, config: Config, params: FakeParams) -> None:
        super().__init__(config, params)
        self.phases: list[str] = []
        self.undone: list[dict[str, Any]] = []

    def _at(self, phase: str) -> None:
        self.phases.append(phase)
        if self.params.fail_at == phase:
            raise ActionFailed(f"{phase} went wrong")
        if self.params.fail_at == f"{phase}-bug":
            raise ZeroDivisionError("a bug")

    async def preflight(self, run: Run) -> list[Check]:
        self._at("preflight")
        soft_ok = self.params.fail_at != "soft-check"
        return [Check("fine", True, True, "fine"), Check("soft", soft_ok, False, "soft")]

    async def plan(self, run: Run) -> Plan:
        self._at("plan")
        return Plan([PlanItem("change", "flip the switch")])

    async def execute(self, run: Run) -> Outcome:
        run.applied("flip", "switch", to="on")
        self._at("execute")
        if self.params.fail_at == "abort":
            run.abort()
            run.check_abort("the operator")
        return Outcome(Verdict.DONE, "flipped")

    async def verify(self, run: Run) -> str | None:
        self._at("verify-check")
        return "it flipped back" if self.params.fail_at == "verify" else None

    async def undo(self, run: Run, data: dict[str, Any]) -> str:
        self.undone.append(data)
        return "switch off again"


async def _run(config: Config, fail_at: str = "", **kw: Any) -> tuple[Finished, Fake, list[Event]]:
    events: list[Event] = []
    action = Fake(config, FakeParams(fail_at, kw.pop("force", False)))
    finished = await Runner(action, events.append, read_only=kw.pop("read_only", False)).run(
        kw.pop("confirm", yes(True)), dry_run=kw.pop("dry_run", False)
    )
    assert events[-1] is finished and sum(isinstance(e, Finished) for e in events) == 1  # exactly one
    return finished, action, events


def _journal(config: Config) -> list[Any]:
    journal = Journal()
    try:
        return journal.recent()
    finally:
        journal.close()


async def test_a_run_goes_through_every_phase_in_order_and_is_journaled(config: Config) -> None:
    done, action, events = await _run(config)
    assert (done.verdict, done.exit_code) == (Verdict.DONE, ExitCode.OK)
    assert action.phases == ["preflight", "plan", "execute", "verify-check"]
    kinds = [e.kind for e in events]
    assert kinds.index("Check") < kinds.index("PlanItem") < kinds.index("Finished")
    (entry,) = _journal(config)
    assert entry.action == "fake" and entry.state == "done" and entry.result["verdict"] == "DONE"
    assert [s["status"] for s in entry.steps] == ["fault-applied"]


@pytest.mark.parametrize(
    ("fail_at", "verdict", "code", "undone"),
    [
        ("preflight", Verdict.FAIL, 1, False),  # an error before anything changed
        ("plan", Verdict.FAIL, 1, False),
        ("soft-check", Verdict.REFUSED, 3, False),  # a failed non-critical check without --force
        ("execute", Verdict.ROLLED_BACK, 4, True),  # after the journaled change: rolled back
        ("verify", Verdict.ROLLED_BACK, 4, True),
        ("abort", Verdict.ABORTED, 4, True),
        ("execute-bug", Verdict.ROLLED_BACK, 4, True),
    ],
)
async def test_each_way_to_end_has_its_verdict_and_code(
    config: Config, fail_at: str, verdict: Verdict, code: int, undone: bool
) -> None:
    done, action, _ = await _run(config, fail_at)
    assert (done.verdict, int(done.exit_code)) == (verdict, code), done
    assert bool(action.undone) is undone
    if undone:
        assert action.undone == [{"key": "switch", "to": "on"}] and "switch off again" in done.summary


async def test_a_bug_is_one_sentence_and_its_traceback_goes_to_errors_log(
    config: Config, tmp_path: Path
) -> None:
    done, _, _ = await _run(config, "plan-bug")
    assert done.verdict is Verdict.FAIL and "ZeroDivisionError: a bug" in done.summary
    log = tmp_path / "state" / "opsconsole" / "errors.log"
    assert "Traceback" in log.read_text() and "Traceback" not in done.summary


async def test_force_runs_past_a_soft_check_and_the_journal_says_so(config: Config) -> None:
    done, _, _ = await _run(config, "soft-check", force=True)
    assert done.verdict is Verdict.DONE
    (entry,) = _journal(config)
    assert any(s["step"] == "preflight" and s["status"] == "forced" for s in entry.steps)


async def test_dry_run_stops_after_the_plan_and_journals_nothing(config: Config) -> None:
    done, action, _ = await _run(config, dry_run=True)
    assert (done.verdict, done.exit_code) == (Verdict.PLAN, 0) and action.phases == ["preflight", "plan"]
    assert done.report["plan"] == ["flip the switch"] and _journal(config) == []


async def test_no_confirmation_changes_nothing_and_is_a_usage_error(config: Config) -> None:
    done, action, _ = await _run(config, confirm=yes(False))
    assert (done.verdict, done.exit_code) == (Verdict.UNCONFIRMED, 2) and "add --yes" in done.summary
    assert "execute" not in action.phases and _journal(config) == []


async def test_an_unfinished_action_refuses_every_mutating_one_in_one_place(config: Config) -> None:
    journal = Journal()
    left = journal.begin("drill", {"scenario": "node-down"}, "someone@elsewhere")
    journal.close()
    done, action, events = await _run(config)
    assert (done.verdict, done.exit_code) == (Verdict.REFUSED, 3) and left in done.summary
    assert action.phases == []  # asked nothing of the cluster
    check = next(e for e in events if isinstance(e, Check))
    assert check.name == "no-unfinished-action" and not check.ok


async def test_read_only_refuses_before_anything(config: Config) -> None:
    done, action, _ = await _run(config, read_only=True)
    assert (done.verdict, done.exit_code) == (Verdict.REFUSED, 3) and "read-only" in done.summary
    assert action.phases == [] and read_only_refusal(Fake, True) and read_only_refusal(Fake, False) is None


async def test_an_interrupt_cancels_the_phase_and_rolls_back(config: Config) -> None:
    class Slow(Fake):
        async def execute(self, run: Run) -> Outcome:
            run.applied("flip", "switch", to="on")
            await asyncio.sleep(60)
            raise AssertionError("not interrupted")

    events: list[Event] = []
    action = Slow(config, FakeParams())
    runner = Runner(action, events.append)
    task = asyncio.ensure_future(runner.run(yes(True)))
    while not action.config or not runner.run_.applied_steps():
        await asyncio.sleep(0.01)
    runner.interrupt()
    done = await asyncio.wait_for(task, 10)
    assert (done.verdict, done.exit_code) == (Verdict.INTERRUPTED, 130) and action.undone
    (entry,) = _journal(config)
    assert entry.state == "aborted"


async def test_errors_are_one_family_with_their_codes() -> None:
    from console.clients.kube import KubeError
    from console.config_file import ConfigError
    from console.errors import exit_code_for
    from console.lock import LockHeld

    assert exit_code_for(UsageError("x")) == exit_code_for(ConfigError("x")) == ExitCode.USAGE
    assert exit_code_for(Refused("x")) == exit_code_for(LockHeld("x")) == ExitCode.REFUSED
    assert exit_code_for(KubeError(403, "Forbidden", "no")) == ExitCode.REFUSED
    assert exit_code_for(KubeError(0, "Unreachable", "no")) == ExitCode.FAILED
    assert exit_code_for(OpsError("x")) == exit_code_for(ValueError("x")) == ExitCode.FAILED
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.INTERRUPTED
    assert {v.exit_code for v in Verdict} == set(ExitCode)  # every code is some verdict's
    assert all(code.meaning and code.__doc__ == code.meaning for code in ExitCode)


def test_finished_is_json_with_the_fields_scripts_read() -> None:
    from console.headless import event_document

    doc = json.loads(json.dumps(event_document(Finished(Verdict.ROLLED_BACK, "why", {"a": 1})), default=str))
    assert doc["kind"] == "Finished" and doc["verdict"] == "ROLLED-BACK" and doc["exit_code"] == 4
    assert doc["summary"] == "why" and doc["report"] == {"a": 1} and doc["report_path"] is None


async def test_a_dry_run_looks_even_with_an_unfinished_action(config: Config) -> None:
    journal = Journal()
    journal.begin("drill", {}, "someone@elsewhere")
    journal.close()
    done, action, events = await _run(config, dry_run=True)
    assert (done.verdict, done.exit_code) == (Verdict.PLAN, 0) and action.phases == ["preflight", "plan"]
    check = next(e for e in events if isinstance(e, Check) and e.name == "no-unfinished-action")
    assert not check.ok and not check.critical  # shown, not counted
    assert {c["name"] for c in done.report["preflight"]} >= {"no-unfinished-action", "fine"}


async def test_a_refusal_during_the_run_stays_a_refusal_while_nothing_changed(config: Config) -> None:
    class NoRights(Fake):
        async def execute(self, run: Run) -> Outcome:
            raise Refused("the API said 403")

    done = await Runner(NoRights(config, FakeParams()), lambda e: None).run(yes(True))
    assert (done.verdict, done.exit_code) == (Verdict.REFUSED, 3) and "403" in done.summary


async def test_a_failed_rollback_leaves_the_entry_for_recover(config: Config) -> None:
    class Stuck(Fake):
        async def undo(self, run: Run, data: dict[str, Any]) -> str:
            raise ActionFailed("the switch is stuck")

    done = await Runner(Stuck(config, FakeParams("execute")), lambda e: None).run(yes(True))
    assert done.verdict is Verdict.FAIL and "rollback failed too" in done.summary
    assert "recover" in done.summary
    journal = Journal()
    try:
        (left,) = journal.unfinished()  # even while this process lives
        assert left.action == "fake" and left.applied()
    finally:
        journal.close()
