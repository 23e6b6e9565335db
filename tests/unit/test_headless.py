"""What scripts and people read of an action: the event printer's JSON lines and text, and the one report
renderer's text, Markdown and JSON."""

from __future__ import annotations

import io
import json

from actions.backup import BackupReport
from actions.promote import PromoteReport
from console.errors import Verdict
from console.events import (
    Check,
    Diff,
    Finished,
    Log,
    PlanItem,
    ProbeSample,
    Progress,
    StepFinished,
    StepStarted,
)
from console.headless import EventPrinter
from console.report import Block, Facts, Report, Table, render


def _printed(as_json: bool, *events: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    printer = EventPrinter(as_json, out, err=err)
    for e in events:
        printer(e)  # type: ignore[arg-type]
    return out.getvalue(), err.getvalue()


def test_json_lines_carry_every_field_under_the_event_kind() -> None:
    out, err = _printed(
        True,
        Check("lock-free", True, True, "free", at=1.0),
        Progress("upload", "upload: 3 files", bytes=10, items=3, at=2.0),
        PlanItem("create", "server k3s-w2", "server k3s-w2", at=3.0),
        Finished(Verdict.DONE, "fine", {"a": 1}, at=4.0),
    )
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["kind"] for d in docs] == ["Check", "Progress", "PlanItem", "Finished"]
    assert docs[0] == {
        "kind": "Check",
        "at": 1.0,
        "name": "lock-free",
        "ok": True,
        "critical": True,
        "why": "free",
    }
    # The typed events keep the fields of the Log lines they were (level, message).
    assert (
        docs[1]["level"] == "progress" and docs[1]["message"] == "upload: 3 files" and docs[1]["items"] == 3
    )
    assert docs[2]["level"] == "create" and docs[2]["message"] == "server k3s-w2"
    assert docs[3]["verdict"] == "DONE" and docs[3]["exit_code"] == 0 and docs[3]["report"] == {"a": 1}
    assert err == ""  # nothing for a person when all went well


def test_a_failure_in_json_mode_says_one_sentence_on_stderr() -> None:
    out, err = _printed(True, Finished(Verdict.REFUSED, "the lock is held by someone"))
    assert json.loads(out)["exit_code"] == 3
    assert err == "opsconsole: REFUSED: the lock is held by someone\n"


def test_text_shows_probe_changes_not_every_sample() -> None:
    samples = [ProbeSample("http-prod", ok, 1.0, "503" if not ok else None, at=float(i)) for i, ok in
               enumerate([True, True, False, False, True, True])]  # fmt: skip
    out, _ = _printed(False, *samples)
    assert out.splitlines() == ["probe http-prod DOWN: 503", "probe http-prod UP after 2.0 s"]


def test_text_lines_of_each_event() -> None:
    out, _ = _printed(
        False,
        Check("backup-fresh", False, False, "9.5 h old"),
        StepStarted("dump", "pg_dump"),
        StepFinished("dump", False, "borg: locked"),
        Log("warning", "careful"),
        Diff("Deployment x", "-replicas: 1\n+replicas: 3"),
        Progress("upload", "upload: 1 MB"),  # the screen's, not the log's
        Finished(
            Verdict.PASS,
            "all good",
            BackupReport([{"repository": "k3s-db", "archive": "db-1", "borg": "ok"}]),
        ),
    )
    assert out.splitlines() == [
        "preflight warn backup-fresh: 9.5 h old",
        "step      dump: pg_dump",
        "step      dump: FAILED — borg: locked",
        "warning   careful",
        "-replicas: 1",
        "+replicas: 3",
        "verdict   PASS: all good",
        "          archives:",
        "            repository  archive  borg",
        "            k3s-db      db-1     ok",
    ]


def test_an_action_whose_output_is_its_report_prints_that_alone() -> None:
    out = io.StringIO()
    printer = EventPrinter(True, out, report_only=True, err=io.StringIO())
    printer(Check("x", True, True, "y"))
    printer(Finished(Verdict.DONE, "fine", BackupReport([])))
    assert json.loads(out.getvalue()) == {"backups": []}


class _Sample(Report):
    def headline(self) -> str:
        return "A report"

    def sections(self, full: bool) -> list[Table | Facts | Block]:
        brief: list[Table | Facts | Block] = [Table("numbers", ("n", "square"), [("2", "4"), ("10", "100")])]
        return (
            brief if not full else [*brief, Facts("", [("who", "me")]), Block("raw", '{"a": 1}', code="json")]
        )


def test_one_renderer_for_the_screen_markdown_and_json() -> None:
    report = _Sample()
    assert render(report, "text") == "numbers:\n  n   square\n  2   4\n  10  100"
    md = render(report, "markdown")
    assert md.startswith("# A report\n") and "| n | square |\n|---|---|\n| 2 | 4 |" in md
    assert '```json\n{"a": 1}\n```' in md and "- who: me" in md
    assert render({"applied": ["x"]}, "text") == "" and "applied  x" in render(
        {"applied": ["x"]}, "text", True
    )


def test_a_report_field_keeps_its_json_name() -> None:
    doc = json.loads(render(PromoteReport(from_="a:1", to="a:2"), "json"))
    assert doc["from"] == "a:1" and "from_" not in doc and "tag" not in doc  # an empty tag is left out
    assert json.loads(render(PromoteReport(from_="a", to="b", tag="v1"), "json"))["tag"] == "v1"
