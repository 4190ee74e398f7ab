"""Webhook notifier: an HTTP POST of the notification as JSON (stdlib ``urllib``).

Each configured URL (``notify.webhooks``) is its own backend, with its own queue and
thread, so a slow or dead endpoint delays only itself. An attempt that times out
(``timeout_s``), cannot connect or gets a 5xx, 408 or 429 answer is retried up to
``retries`` times after ``0.5 * 2**n`` seconds (capped at ``max_backoff_s``, with
jitter); any other 4xx is final (the request is wrong, repeating it will not help).
The body is the events topic's object (``{"type", "before", "after"}``) or the stream
object (``{"type": "stream", ...}``); see docs/notifications.md.

The URL may hold a secret (``https://user:pw@host/hook?token=...``; a user and password
are sent as HTTP Basic authentication) and so may the headers: log lines show the URL
with its password and query values as ``***`` and never show headers.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pipeline.notify.base import Backend, Counter, Notification
from pipeline.retry import backoff_delays

if TYPE_CHECKING:
    from pipeline.config import WebhookConfig

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 429}  # and every 5xx


def safe_url(url: str) -> str:
    """``url`` for a log line: password and query values replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "&".join(f"{k}=***" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``(url without user:password@, its Basic Authorization header or None)``
    (urllib would take ``user:password@host`` for a host name)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    auth = "Basic " + base64.b64encode(token).decode()
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), auth


class WebhookNotifier(Backend):
    name = "webhook"

    def __init__(
        self,
        cfg: WebhookConfig,
        count: Counter | None = None,
        queue_size: int = 1000,
        max_delay_s: float = 60.0,
    ) -> None:
        super().__init__(count, queue_size, max_delay_s)
        self.cfg = cfg
        self.url = safe_url(cfg.url)
        self._pause = backoff_delays(0.5, cfg.max_backoff_s)
        self._failing = False
        self.attempts = 0  # HTTP requests made (for tests and the log)

    def wants(self, note: Notification) -> bool:
        return note.kind in self.cfg.events

    def _request(self, body: bytes) -> urllib.request.Request:
        headers = {"Content-Type": "application/json", "User-Agent": "facepipe"}
        url, auth = split_userinfo(self.cfg.url)
        if auth is not None:
            headers["Authorization"] = auth
        headers.update(self.cfg.headers)
        return urllib.request.Request(url, data=body, headers=headers, method="POST")

    def deliver(self, note: Notification) -> str:
        body = json.dumps(note.message).encode()
        why = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt and self.stopping.wait(self._pause(attempt - 1)):
                break
            self.attempts += 1
            try:
                with urllib.request.urlopen(self._request(body), timeout=self.cfg.timeout_s) as r:
                    r.read(64 * 1024)
                    status = r.status
            except urllib.error.HTTPError as exc:
                status, why = exc.code, f"HTTP {exc.code}"
                if status < 500 and status not in RETRY_STATUS:
                    break  # the request itself is wrong: final
                continue
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                why = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                continue
            if 200 <= status < 300:
                if self._failing:
                    log.info("notify: webhook %s answers again", self.url)
                    self._failing = False
                return "sent"
            why = f"HTTP {status}"
        if not self._failing:
            log.warning(
                "notify: webhook %s failed after %d attempt(s) (%s); a %s notification dropped",
                self.url, attempt + 1, redact(why, self.cfg.url), note.kind,
            )  # fmt: skip
            self._failing = True
        return "failed"


def redact(text: str, url: str) -> str:
    """``text`` without ``url`` (an error message may quote it with its secrets)."""
    return text.replace(url, safe_url(url))
