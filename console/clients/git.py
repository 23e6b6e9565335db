"""Git over SSH for the ``tag`` promotion route: read the remote's tags, tag one commit, push the tag.

The real ``git`` CLI with ``GIT_SSH_COMMAND`` pointing at the operator's OpenSSH config (the same one the
node aliases and the Storage Box use), in batch mode: no prompt can hang a headless run.  Nothing is cloned
into the operator's working tree — a throw-away bare repository fetches the branch, so the tag is made on
the exact commit the remote has, and only the tag is pushed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import tempfile
from pathlib import Path

from console.config import SshConfig
from console.errors import OpsError


class GitError(OpsError):
    """A git failure in one sentence: what was tried and git's last line."""


def git_env(ssh: SshConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    rsh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(ssh.connect_timeout_s)}"]
    if ssh.config_path().exists():
        rsh[1:1] = ["-F", str(ssh.config_path())]
    env["GIT_SSH_COMMAND"] = shlex.join(rsh)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    return env


async def git(*args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = [x for x in err.decode(errors="replace").splitlines() if x.strip()]
        raise GitError(f"git {args[0]} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return out.decode(errors="replace").strip()


async def remote_tags(url: str, env: dict[str, str]) -> dict[str, str]:
    """Tag name -> the commit it points at (annotated tags peeled)."""
    out = await git("ls-remote", "--tags", url, env=env)
    tags: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        name = ref.removeprefix("refs/tags/")
        if name.endswith("^{}"):
            tags[name[:-3]] = sha  # the peeled commit wins over the tag object
        else:
            tags.setdefault(name, sha)
    return tags


def next_version(tags: list[str], pattern: str) -> str | None:
    """The next patch version after the highest tag matching ``pattern`` (``v1.4.2`` -> ``v1.4.3``)."""
    versions = []
    for t in tags:
        m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", t)
        if m and re.search(pattern, t):
            versions.append(tuple(int(x) for x in m.groups()))
    if not versions:
        return None
    major, minor, patch = max(versions)
    return f"v{major}.{minor}.{patch + 1}"


async def push_tag(
    url: str, branch: str, commit: str, tag: str, message: str, who: str, env: dict[str, str]
) -> str:
    """Tag ``commit`` (which must be on ``branch`` of the remote) and push only the tag; returns the full
    commit hash tagged."""
    with tempfile.TemporaryDirectory(prefix="opsconsole-tag-") as tmp:
        work = Path(tmp)
        await git("init", "-q", "--bare", str(work), env=env)
        await git("fetch", "-q", "--no-tags", url, f"refs/heads/{branch}:refs/remotes/origin/{branch}",
                  env=env, cwd=work)  # fmt: skip
        try:
            full = await git("rev-parse", "--verify", "-q", f"{commit}^{{commit}}", env=env, cwd=work)
            await git("merge-base", "--is-ancestor", full, f"origin/{branch}", env=env, cwd=work)
        except GitError:
            raise GitError(f"commit {commit} is not on {branch} of {url}") from None
        name, _, email = who.partition("@")
        ident = ["-c", f"user.name={name}", "-c", f"user.email={who if email else name + '@opsconsole'}"]
        await git(*ident, "-c", "tag.gpgsign=false", "tag", "-a", tag, "-m", message, full, env=env, cwd=work)
        await git("push", "-q", url, f"refs/tags/{tag}", env=env, cwd=work)
        return full
