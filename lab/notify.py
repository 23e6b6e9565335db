"""The lab's notification receivers: a webhook (what apprise's ``json://`` posts) and an SMTP sink
(``aiosmtpd``), both on loopback, so the watcher's messages are delivered by the real apprise plugins and
can be read back (``opsconsole lab notifications [--json]``).

The webhook's path carries a token (``/hook/TOKEN``), as Slack's and ntfy's do; a wrong one is 401.  The
lab's ``console.toml`` names it as ``{file:…}``, the way a real config references a secret.  The SMTP
sink takes mail for any recipient without authentication or TLS (the ``mode=insecure`` of apprise's
``mailto://``): it is a sink, not a mail server.  Every message is appended to ``notifications.jsonl``
in the lab's directory (sink, time, title/subject, body, apprise's type).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from lab.state import write_secret

LOOPBACK = "127.0.0.1"


class NotificationSinks:
    def __init__(self, lab_dir: Path) -> None:
        self.path = lab_dir / "notifications.jsonl"
        self.path.unlink(missing_ok=True)
        self.token = secrets.token_urlsafe(16)
        self.token_file = write_secret(lab_dir, "webhook-token", self.token)
        self._runner: web.AppRunner | None = None
        self._smtp: asyncio.AbstractServer | None = None

    def _record(self, sink: str, title: str, body: str, kind: str, **extra: Any) -> None:
        entry = {"at": time.time(), "sink": sink, "title": title, "body": body, "type": kind, **extra}
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    async def _hook(self, request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.match_info["token"], self.token):
            return web.json_response({"error": "unknown webhook token"}, status=401)
        try:
            doc = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        self._record(
            "webhook", str(doc.get("title", "")), str(doc.get("message", "")), str(doc.get("type", ""))
        )
        return web.json_response({"ok": True})

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        msg = email.message_from_bytes(
            raw if isinstance(raw, bytes) else raw.encode(), policy=email.policy.default
        )
        part = msg.get_body(("plain",)) if hasattr(msg, "get_body") else None
        body = part.get_content() if part is not None else ""
        self._record(
            "smtp",
            str(msg.get("Subject", "")),
            str(body).strip(),
            str(msg.get("X-Apprise-Type", "")),
            to=list(envelope.rcpt_tos),
        )
        return "250 OK"

    async def start(self) -> tuple[int, int]:
        """(webhook port, SMTP port)."""
        app = web.Application()
        app.router.add_post("/hook/{token}", self._hook)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0, reuse_address=True)
        await site.start()
        server: Any = site._server
        hook_port = int(server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        self._smtp = await loop.create_server(lambda: SMTP(self, hostname="lab-smtp"), LOOPBACK, 0)
        smtp_port = int(self._smtp.sockets[0].getsockname()[1])
        return hook_port, smtp_port

    def urls(self, hook_port: int, smtp_port: int) -> list[dict[str, str]]:
        """The watcher's ``[[watch.notify]]`` entries for these sinks (the token as a file reference)."""
        return [
            {"name": "lab-webhook", "url": f"json://{LOOPBACK}:{hook_port}/hook/{{file:{self.token_file}}}"},
            {
                "name": "lab-mail",
                "url": f"mailto://watch@{LOOPBACK}:{smtp_port}?to=ops@lab.invalid&from=watch@lab.invalid"
                "&mode=insecure",
            },
        ]

    async def close(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
        if self._runner is not None:
            await self._runner.cleanup()


def received(lab_dir: Path) -> list[dict[str, Any]]:
    """What the sinks received, oldest first."""
    try:
        lines = (lab_dir / "notifications.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]
