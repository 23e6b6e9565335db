"""The borg CLI over SSH to the Storage Box: the operator's own tool, driven with JSON output.

``BORG_RSH`` points borg's ssh at the configured OpenSSH config, so the Storage Box alias, port, key
and known hosts are the operator's.  The passphrase comes from the environment variable or the
passcommand named in the config (``BORG_PASSCOMMAND`` is borg's own mechanism); it is passed to the borg
process's environment only, and never appears in an error message.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from typing import Any

from console.config import BackupsConfig, SshConfig
from console.errors import OpsError

LOCK_WAIT_ENV = "OPSCONSOLE_BORG_LOCK_WAIT"


class BorgError(OpsError):
    """A borg failure: the repository and borg's own one-line reason."""


def borg_env(backups: BackupsConfig, ssh: SshConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
    rsh = ["ssh", "-o", "BatchMode=yes"]
    if ssh.config_path().exists():
        rsh[1:1] = ["-F", str(ssh.config_path())]
    env["BORG_RSH"] = shlex.join(rsh)
    env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "no"
    env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "no"
    env["LC_ALL"] = "C.UTF-8"
    if backups.lock_wait_s:
        env[LOCK_WAIT_ENV] = str(backups.lock_wait_s)  # read by borg_run: becomes borg's --lock-wait
    if backups.passcommand:
        env["BORG_PASSCOMMAND"] = backups.passcommand
    elif backups.passphrase_env and os.environ.get(backups.passphrase_env):
        env["BORG_PASSPHRASE"] = os.environ[backups.passphrase_env]
    # Borg's cache and security dirs: never the operator's real ones when HOME is shared with the lab.
    for key in ("BORG_BASE_DIR", "BORG_CACHE_DIR", "BORG_CONFIG_DIR", "BORG_SECURITY_DIR"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


async def borg_json(args: list[str], env: dict[str, str], timeout: float = 60.0) -> dict[str, Any]:
    """Run ``borg ARGS --json``-style and parse stdout; :class:`BorgError` with borg's last line."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "borg",
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise BorgError("borg is not installed (Debian package borgbackup)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BorgError(f"borg {args[0]}: no answer within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        raise BorgError(_reason(lines))
    try:
        data: dict[str, Any] = json.loads(out)
    except ValueError:
        raise BorgError(f"borg {args[0]}: output is not JSON") from None
    return data


def _reason(lines: list[str]) -> str:
    """Borg's most useful stderr line (the error, not the traceback or the ssh chatter)."""
    for ln in lines:
        if "passphrase" in ln.lower():
            return "wrong or missing Borg passphrase"
        if "Failed to create/acquire the lock" in ln or ("lock" in ln.lower() and "timeout" in ln.lower()):
            return "repository is locked (a backup may be running or hung): retry with --lock-wait SECONDS"
        if "Connection closed by remote host" in ln or "Connection refused" in ln:
            return "Storage Box unreachable over SSH"
        if "does not exist" in ln or "is not a valid repository" in ln:
            return ln.strip()[:200]
    return (lines[-1].strip() if lines else "borg failed")[:200]
