"""console/ and actions/ never import Textual, and the product never imports the lab (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_core_imports_without_textual_or_lab() -> None:
    code = (
        "import sys, console.cli, console.config, actions\n"
        "import console.cli as c\n"
        "c.main(['--config', 'config.toml', '--check-config'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'lab')]\n"
        "print('LOADED:' + ','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED:"
