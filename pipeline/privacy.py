"""Keeping secrets and face data private: URL redaction and private file modes.

* :func:`redact_url` hides the password of every URL in a text (``redis://:s3cret@host``
  -> ``redis://:***@host``, ``postgresql://user:pw@db/x`` -> ``postgresql://user:***@db/x``,
  ``?password=pw`` -> ``?password=***``). Every message that shows a Redis or store URL
  goes through it.
  :func:`redact_logs` applies it to every log message.
* :func:`private_umask` makes the files a process creates readable by its user only
  (0600 files, 0700 directories): the event database, snapshots and logs under
  ``$FACEPIPE_HOME`` hold faces. The CLI sets it at start; the worker processes it starts
  inherit it.
"""

from __future__ import annotations

import errno
import logging
import os
import re

PRIVATE_UMASK = 0o077

_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<pw>[^@\s]*)@"
)
_QUERY_PW = re.compile(r"(?P<key>[?&](?:password|passwd|pwd)=)[^&\s]*", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_PW.sub(lambda m: f"{m['key']}***", text)


class RedactFilter(logging.Filter):
    """A logging filter that passes every record's message through :func:`redact_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logs() -> None:
    """Redact URL passwords from everything the root logger's handlers write."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())


def private_umask() -> int:
    """Set the process umask so new files are 0600 and directories 0700; returns the old."""
    return os.umask(PRIVATE_UMASK)


def listen_failure(exc: OSError, what: str, host: str, port: int, hint: str) -> str:
    """The one-line reason a listener (``what``: "metrics", "the API") cannot listen on
    ``host:port``, with what to change (``hint``)."""
    reason = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return f"cannot serve {what} on {host}:{port}: {reason} ({hint})"
