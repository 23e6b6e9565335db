"""config.toml validation: every problem is one clear line naming file, line and field; exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from tests.conftest import ROOT, opsconsole

SEED = (ROOT / "config.toml").read_text()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_seed_config_is_valid() -> None:
    config = load_config(ROOT / "config.toml")
    assert [n.name for n in config.nodes] == ["k3s-mgr", "k3s-w1", "k3s-w2"]
    assert config.hetzner.load_balancer.health_check.interval_s == 15
    assert config.node("k3s-mgr").taints == ["node-role.kubernetes.io/control-plane:NoSchedule"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t.replace("[cluster]", "[cluster"), "TOML syntax error"),
        (lambda t: t.replace('name = "k3s-docfast"\n', ""), "cluster.name: Field required"),
        (lambda t: t.replace("hetzner_id = 121365839", 'hetzner_id = "w1"'), "nodes[1].hetzner_id"),
        (
            lambda t: t.replace("interval_s = 15", "interval_s = 15\nintervall = 3"),
            "hetzner.load_balancer.health_check.intervall: unknown key",
        ),
        (lambda t: t.replace('targets = ["k3s-w1", "k3s-w2"]', 'targets = ["k3s-w9"]'), "is not a node"),
    ],
    ids=["syntax", "missing", "wrong-type", "unknown-key", "bad-reference"],
)
def test_broken_configs_give_one_clear_message(tmp_path: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path, edit(SEED))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert expected in message
    assert message.startswith(f"{path}:")
    proc = opsconsole("--config", str(path), "--check-config", check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_wrong_type_names_the_right_line(tmp_path: Path) -> None:
    text = SEED.replace("hetzner_id = 121365839", 'hetzner_id = "w1"')
    line = text.splitlines().index('hetzner_id = "w1"') + 1
    with pytest.raises(ConfigError, match=rf"config.toml:{line}: nodes\[1\].hetzner_id"):
        load_config(_write(tmp_path, text))


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    missing = opsconsole("--config", str(tmp_path / "nope.toml"), "--check-config", check=False)
    assert missing.returncode == 2 and "not found" in missing.stderr
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    unreadable = opsconsole("--config", str(binary), "--check-config", check=False)
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr


def test_wrong_flag_is_a_usage_error() -> None:
    proc = opsconsole("--no-such-flag", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


async def test_the_dashboard_paints_then_refuses_a_config_that_fails_validation(tmp_path: Path) -> None:
    """`opsconsole` paints from the config's head and validates right after (console/config_file.py): a
    config that fails validation ends the app with exit 2 and the same one-line message."""
    from console.config_file import read_head
    from screens.app import Dashboard

    path = _write(tmp_path, SEED.replace("hetzner_id = 121365839", 'hetzner_id = "w1"'))
    head = read_head(path)
    assert head.cluster == "k3s-docfast" and not head.lab
    app = Dashboard(None, head=head)
    async with app.run_test() as pilot:
        assert "k3s-docfast" in str(app.query_one("#banner").render())
        for _ in range(500):
            if app.config_error:
                break
            await pilot.pause(0.01)
    assert app.return_code == 2
    assert app.config_error is not None and app.config_error.startswith(f"{path}:")
    assert "nodes[1].hetzner_id" in app.config_error
