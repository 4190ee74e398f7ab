"""Names that reach the file system or the store: stream names and people's names.

A stream name becomes a directory under the snapshots directory and part of Redis keys;
a person's name is stored and printed. Both are checked at every entry point (the CLI's
``--stream``, ``--enroll NAME=``, ``enroll``, ``people --rename/--merge``, and the sink
for names that arrive in queue messages), so no name can climb out of a directory
(``..``, ``/``, ``\\``) or smuggle control characters into logs.

* stream: ASCII letters, digits, ``_ . -``; starts with a letter, digit or ``_``; no
  ``..``; at most 64 characters.
* person: letters (any script), digits, spaces and ``_ . - '``; starts and ends with a
  letter or digit; no ``..``; at most 100 characters; not ``unknown`` nor ``unknown-N``
  (those name unrecognised people).
"""

from __future__ import annotations

import re

STREAM_MAX = 64
PERSON_MAX = 100

_STREAM_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PERSON_RE = re.compile(r"^[^\W_](?:[\w .'-]*[^\W_])?$")
_UNKNOWN_RE = re.compile(r"^unknown(-\d+)?$")


class BadName(ValueError):
    """A stream or person name that is not allowed (the message says why)."""


def check_stream(name: str) -> str:
    """``name`` if it is a valid stream name, else :class:`BadName`."""
    if not name or len(name) > STREAM_MAX or ".." in name or not _STREAM_RE.match(name):
        raise BadName(
            f"bad stream name {name!r}: use 1-{STREAM_MAX} ASCII letters, digits, '_', '.' "
            "or '-' (starting with a letter, digit or '_', no '..')"
        )
    return name


def check_person(name: str, allow_unknown: bool = False) -> str:
    """``name`` if it is a valid person name, else :class:`BadName`.

    ``allow_unknown`` accepts ``unknown-N`` too (commands that act on unknown clusters).
    """
    if _UNKNOWN_RE.match(name or ""):
        if allow_unknown and name != "unknown":
            return name
        raise BadName(f"{name!r} cannot be a person's name (it names unrecognised people)")
    if not name or len(name) > PERSON_MAX or ".." in name or not _PERSON_RE.match(name):
        raise BadName(
            f"bad person name {name!r}: use 1-{PERSON_MAX} letters, digits, spaces, '_', "
            "'.', '-' or \"'\" (starting and ending with a letter or digit, no '..')"
        )
    return name
