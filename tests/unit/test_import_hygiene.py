"""console/ and actions/ never import Textual, and the product never imports the lab (DESIGN.md); the
Kubernetes source loads only the client it uses; the dashboard's first frame loads no pydantic."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def _loaded(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh interpreter; the loaded modules whose names start with ``prefixes``."""
    code += f"\nprint('LOADED:' + ','.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_core_imports_without_textual_or_lab() -> None:
    code = (
        "import sys, opsconsole.cli, console.config, actions\n"
        "import opsconsole.cli as c\n"
        "c.main(['--config', 'config.toml', '--check-config'])"
    )
    assert [m for m in _loaded(code, ("textual", "lab")) if m.split(".")[0] in ("textual", "lab")] == []


def test_the_kube_source_loads_only_the_async_client_it_uses() -> None:
    """console/clients/kube_lib.py: the synchronous client and the dynamic clients (~0.45 s) stay unloaded."""
    code = "import sys, console.sources.kube as k\nassert k.client.ApiClient and k.config.load_kube_config"
    heavy = (
        "kubernetes.client",
        "kubernetes.dynamic",
        "kubernetes.aio.dynamic",
        "kubernetes_validate",
        "jsonschema",
    )
    assert _loaded(code, heavy) == []


def test_the_dashboards_first_frame_needs_no_pydantic() -> None:
    """console/config_file.py: what the dashboard imports before its first frame validates nothing yet."""
    code = (
        "import sys, opsconsole.cli, console.config_file, screens.app, actions.drill_report, console.journal"
    )
    assert _loaded(code, ("pydantic", "console.config")) == ["console.config_file"]
