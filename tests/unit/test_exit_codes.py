"""The exit-code table, action by action: every action in the registry is run (through the same runner and
argument parsing as ``opsconsole --action``) into each refusal it has, and its code checked.

* every mutating action: refused by a read-only session (3), and by an unfinished action in the journal
  (3) — except ``recover``, which is what finishes one;
* every action's bad parameters: a usage error (2), the control-plane node as a replacement target a
  refusal (3).

None of these rows reaches a cluster: the gate, the journal check and the parameters come first (the
runner's order), which is what this proves.  The codes of a run that did reach one are the end-to-end
tests' (tests/test_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actions.registry import ACTIONS
from console.config import load_config
from console.errors import ExitCode
from console.journal import Journal
from console.runner import Runner, read_only_refusal, yes
from opsconsole.cli import build_params, parse
from tests.conftest import ROOT

MUTATING = [name for name, cls in ACTIONS.items() if cls.mutating]
USAGE = [
    ("drill", [], ExitCode.USAGE, "needs --scenario"),
    ("replace-node", [], ExitCode.USAGE, "must name a node"),
    ("replace-node", ["--target", "k3s-mgr"], ExitCode.REFUSED, "restore-cluster"),
    ("restore", ["--db", "nope"], ExitCode.USAGE, "is not one of"),
    ("restore", ["--into", "docfast"], ExitCode.USAGE, "--i-mean-production"),
    ("promote", ["--tag", "v9.9.9"], ExitCode.USAGE, "release.route = 'tag'"),
    ("ha-export", [], ExitCode.USAGE, "needs --dir"),
    ("cordon", [], ExitCode.USAGE, "needs --target NODE"),
    ("uncordon", [], ExitCode.USAGE, "needs --target NODE"),
    ("restart", ["--target", "docfast"], ExitCode.USAGE, "NAMESPACE/DEPLOYMENT"),
    ("scale", ["--target", "docfast/docfast"], ExitCode.USAGE, "--replicas"),
    ("delete-pod", ["--target", "nowhere"], ExitCode.USAGE, "NAMESPACE/POD"),
    ("drain", [], ExitCode.USAGE, "needs --target NODE"),
    ("power-cycle", [], ExitCode.USAGE, "needs --target NODE"),
    ("upgrade", [], ExitCode.USAGE, "needs --version"),
    ("upgrade", ["--version", "1.34.5"], ExitCode.USAGE, "not a K3s version"),
    ("upgrade", ["--version", "v1.34.5+k3s1", "--nodes", "k3s-w9"], ExitCode.USAGE, "not a node"),
    ("renew", ["--target", "docfast.dev-tls"], ExitCode.USAGE, "NAMESPACE/CERTIFICATE"),
    ("fence", ["--target", "main-db-9"], ExitCode.USAGE, "main-db-1, main-db-2"),
    ("unfence", [], ExitCode.USAGE, "needs --target"),
    ("switchover", ["--target", "main-db-7"], ExitCode.USAGE, "--target is one of"),
    ("logs", [], ExitCode.USAGE, "NAMESPACE/POD"),
    ("logs", ["--target", "docfast/x", "--since", "soon"], ExitCode.USAGE, "--since takes a duration"),
    ("logs", ["--target", "docfast/x", "--tail", "-1"], ExitCode.USAGE, "--tail takes"),
]
READ_ONLY_OK = [name for name, cls in ACTIONS.items() if not cls.mutating]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


async def _code(name: str, flags: list[str], read_only: bool = False) -> tuple[int, str]:
    args = parse(["--config", str(ROOT / "config.toml"), "--action", name, *flags])
    cls = ACTIONS[name]
    action = cls(load_config(ROOT / "config.toml"), build_params(cls, args))
    done = await Runner(action, lambda e: None, read_only=read_only).run(yes(True))
    return int(done.exit_code), done.summary


def test_the_table_covers_every_action_in_the_registry() -> None:
    covered = set(MUTATING) | set(READ_ONLY_OK) | {name for name, *_ in USAGE}
    assert covered == set(ACTIONS) and all(ACTIONS[n].name == n for n in ACTIONS)


@pytest.mark.parametrize("name", MUTATING)
async def test_a_read_only_session_refuses_every_mutating_action(name: str, state: Path) -> None:
    code, summary = await _code(name, ["--scenario", "node-down"] if name == "drill" else [], read_only=True)
    assert code == ExitCode.REFUSED and "read-only" in summary


@pytest.mark.parametrize("name", READ_ONLY_OK)
def test_a_read_only_session_lets_the_looking_actions_run(name: str) -> None:
    assert read_only_refusal(ACTIONS[name], True) is None


@pytest.mark.parametrize("name", [n for n in MUTATING if not ACTIONS[n].resumes])
async def test_an_unfinished_action_refuses_every_other(name: str, state: Path) -> None:
    journal = Journal()
    left = journal.begin("drill", {"scenario": "node-down", "target": "k3s-w1"}, "someone@elsewhere")
    journal.close()
    flags: dict[str, list[str]] = {
        "drill": ["--scenario", "node-down"],
        "replace-node": ["--target", "k3s-w1"],
        "cordon": ["--target", "k3s-w1"],
        "uncordon": ["--target", "k3s-w1"],
        "restart": ["--target", "docfast/docfast"],
        "scale": ["--target", "docfast/docfast", "--replicas", "3"],
        "delete-pod": ["--target", "docfast/docfast-1"],
        "drain": ["--target", "k3s-w1"],
        "power-cycle": ["--target", "k3s-w1"],
        "upgrade": ["--version", "v1.34.5+k3s1"],
        "renew": ["--target", "docfast/docfast.dev-tls"],
        "fence": ["--target", "main-db-2"],
        "unfence": ["--target", "main-db-2"],
    }
    code, summary = await _code(name, flags.get(name, []))
    assert code == ExitCode.REFUSED and left in summary and "recover" in summary


@pytest.mark.parametrize(("name", "flags", "expected", "said"), USAGE)
async def test_bad_parameters_are_refused_with_their_code(
    name: str, flags: list[str], expected: ExitCode, said: str, state: Path
) -> None:
    code, summary = await _code(name, flags)
    assert code == expected and said in summary, summary


def test_every_parameter_is_a_flag_of_the_command_line() -> None:
    from console.action import param_specs

    parser = parse  # the flags come from the actions' Params: each one parses, with its action
    for name, cls in ACTIONS.items():
        for f, spec in param_specs(cls.Params):
            value: Any = [] if spec.flag in ("--yes",) else ["1"]
            kind = "bool" if f.default is False else "value"
            argv = ["--action", name, spec.flag, *([] if kind == "bool" else value)]
            if spec.choices and not callable(spec.choices):
                argv[-1] = next(iter(spec.choices))
            args = parser(argv)
            assert getattr(build_params(cls, args), f.name) not in (None, False, ""), (name, spec.flag)
