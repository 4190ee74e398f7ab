"""The live view: the newest frame the sink stored of a stream (``Bus.latest``, its image
from Redis) with each face's box, track id, name, age and gender drawn, as JPEG, and an
MJPEG stream (``multipart/x-mixed-replace``) of it for an ``<img>``."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pipeline.frames import FrameStore
from pipeline.record import Face, FrameRecord

if TYPE_CHECKING:
    from starlette.requests import Request

    from pipeline.api.app import State

BOX_RGB = (0, 255, 0)  # face boxes: pure green (the browser tests look for it)
TEXT_RGB = (0, 0, 0)
PLACEHOLDER_SIZE = (640, 360)
BOUNDARY = "frame"
REPEAT_S = 2.0  # an unchanged frame is sent again this often (keeps the stream alive)


def face_label(face: Face, event: dict[str, Any] | None) -> str:
    """``#track name, age, gender``: the name and attributes the store fused for the
    face's track (its event) when it has one, else what the stages put on the face."""
    parts = [f"#{face.track_id}" if face.track_id is not None else "?"]
    name = (event or {}).get("person") or (event or {}).get("unknown_id") or face.name
    if name:
        parts.append(name)
    age = (event or {}).get("age")
    age = face.age if age is None else age
    gender = (event or {}).get("gender") or face.gender
    extra = []
    if age is not None:
        extra.append(f"{age:.0f}")
    if gender in ("male", "female"):
        extra.append("F" if gender == "female" else "M")
    return " ".join(parts) + (f" {'/'.join(extra)}" if extra else "")


def annotate(rgb: np.ndarray, faces: list[tuple[Face, str]]) -> np.ndarray:
    """A copy of ``rgb`` with each face's box and label drawn."""
    out = np.ascontiguousarray(rgb.copy())
    h, w = out.shape[:2]
    thick = max(2, round(min(w, h) / 200))
    scale = max(0.4, min(w, h) / 700)
    for face, label in faces:
        x1, y1, x2, y2 = face.clipped(w, h).xyxy()
        cv2.rectangle(out, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), BOX_RGB, thick)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - base, y2 + th + 4)
        tx = max(0, min(x1, w - tw - 4))  # the whole label inside the picture
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 4, ty + base), BOX_RGB, -1)
        cv2.putText(out, label, (tx + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_RGB, 1,
                    cv2.LINE_AA)  # fmt: skip
    return out


def placeholder(text: str) -> np.ndarray:
    w, h = PLACEHOLDER_SIZE
    out = np.full((h, w, 3), 40, np.uint8)
    cv2.putText(out, text[:60], (20, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (220, 220, 220), 1,
                cv2.LINE_AA)  # fmt: skip
    return out


def jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    if not ok:
        raise ValueError("could not JPEG-encode the frame")
    return buf.tobytes()


def track_events(st: State, rec: FrameRecord) -> dict[int, dict[str, Any]]:
    """The events of the record's tracks by track id (a merged track's via its alias)."""
    tids = {f.track_id for f in rec.faces if f.track_id is not None}
    if not tids:
        return {}
    uids = {tid: rec.track_uid(tid) for tid in tids}
    rows = st.store.events_by_uid(uids.values())
    missing = [u for u in uids.values() if u not in rows]
    if missing:
        aliases = st.store.aliases()
        more = st.store.events_by_uid(aliases[u] for u in missing if u in aliases)
        rows.update({u: more[aliases[u]] for u in missing if aliases.get(u) in more})
    return {tid: rows[u] for tid, u in uids.items() if u in rows}


def render(st: State, stream: str, rec: FrameRecord | None) -> bytes:
    """The JPEG the live view shows for ``stream`` now."""
    if st.bus is None:
        return jpeg(placeholder("live view needs Redis (REDIS_URL)"))
    if rec is None:
        return jpeg(placeholder(f"{stream}: no recent frame"))
    image = FrameStore(st.bus.conn).get(rec.key) if rec.key else None
    if image is None:
        return jpeg(placeholder(f"{stream}: frame {rec.seq} expired"))
    events = track_events(st, rec)
    return jpeg(annotate(image, [(f, face_label(f, events.get(f.track_id))) for f in rec.faces]))


def render_context(st: State, event: dict[str, Any], path: Path) -> bytes:
    """An event's context image (the JPEG at ``path``, the whole frame of its snapshot)
    with its faces' boxes drawn, labelled as the live view labels them: with the names the
    store holds now (a rename or a merge shows at once)."""
    import json

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"unreadable context image {path}")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    faces = [
        Face(box=(int(x), int(y), int(w), int(h)), track_id=int(tid))
        for x, y, w, h, tid in json.loads(event.get("context_faces") or "[]")
    ]
    rec = FrameRecord(stream=event["stream"], session=event["session"], seq=0, ts=0.0, faces=faces)
    events = track_events(st, rec)
    return jpeg(annotate(rgb, [(f, face_label(f, events.get(f.track_id))) for f in faces]))


class RenderCache:
    """The last picture rendered per stream, shared by every viewer: N open live views of
    a stream cost one decode-draw-encode per new frame, not N (a picture is reused while
    its frame is the newest, at most ``max_age_s``, so renamed tracks show soon)."""

    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._last: dict[tuple[int, str], tuple[object, float, bytes]] = {}

    def get(self, st: State, stream: str, rec: FrameRecord | None) -> bytes:
        key, ident = (id(st), stream), None if rec is None else (rec.session, rec.seq)
        with self._lock:
            hit = self._last.get(key)
        if hit is not None and hit[0] == ident and time.monotonic() - hit[1] < self.max_age_s:
            return hit[2]
        data = render(st, stream, rec)
        with self._lock:
            self._last[key] = (ident, time.monotonic(), data)
        return data


CACHE = RenderCache()


def latest(st: State, stream: str) -> FrameRecord | None:
    return None if st.bus is None else st.bus.latest(stream)


def _part(data: bytes) -> bytes:
    # each part is followed at once by the next boundary, so a browser shows the frame
    # without waiting for the next one
    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    return head + data + f"\r\n--{BOUNDARY}\r\n".encode()


async def mjpeg(
    request: Request, st: State, stream: str, fps: float = 5.0, max_frames: int | None = None
) -> AsyncIterator[bytes]:
    """The live view of ``stream`` as MJPEG parts: a new part when the newest frame
    changes (polled ``fps`` times a second), the same again every ``REPEAT_S``; ends when
    the client goes away, the server stops or after ``max_frames`` parts."""
    from starlette.concurrency import run_in_threadpool

    yield f"--{BOUNDARY}\r\n".encode()
    shown: tuple[str, int] | None | bool = False  # False: nothing sent yet
    sent, sent_at = 0, 0.0
    stopping = getattr(request.app.state, "should_exit", None)  # set by `facepipe serve`
    while max_frames is None or sent < max_frames:
        if await request.is_disconnected() or (stopping is not None and stopping()):
            return
        rec = await run_in_threadpool(latest, st, stream)
        ident = None if rec is None else (rec.session, rec.seq)
        if ident != shown or time.monotonic() - sent_at >= REPEAT_S:
            yield _part(await run_in_threadpool(CACHE.get, st, stream, rec))
            shown, sent, sent_at = ident, sent + 1, time.monotonic()
        await asyncio.sleep(1.0 / fps)
