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


def test_the_kube_source_loads_only_the_async_client_it_uses() -> None:
    """console/clients/kube_lib.py: the synchronous client and the dynamic clients (~0.45 s) stay unloaded."""
    code = (
        "import sys, console.sources.kube as k\n"
        "assert k.client.ApiClient and k.config.load_kube_config\n"
        "print('LOADED:' + ','.join(sorted(m for m in sys.modules if m.startswith(('kubernetes.client', "
        "'kubernetes.dynamic', 'kubernetes.aio.dynamic', 'kubernetes_validate', 'jsonschema')))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "LOADED:"
