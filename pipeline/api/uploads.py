"""Uploaded photos: size-checked (the app's body limit), pixel-checked and decoded by
:func:`pipeline.images.read_image`, one face found and encoded as enrolment does."""

from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import UploadFile

from pipeline.api.app import ApiError, State
from pipeline.images import ImageError, read_image
from pipeline.record import Face

MAX_FILES = 20  # photos per request
ENCODE_LOCK = threading.Lock()  # one encoding at a time (the encoder's dlib models)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(upload: UploadFile, i: int) -> str:
    """A file name for messages and the gallery's ``source`` (no directories)."""
    name = _SAFE.sub("_", Path(upload.filename or "").name).strip("._")[:80]
    return name or f"photo-{i + 1}"


def encode_uploads(
    st: State, uploads: list[UploadFile], num_jitters: int
) -> list[tuple[str, np.ndarray, Face, float]]:
    """``(name, encoding, face, quality)`` of each uploaded photo, which must show exactly
    one face (encoded with ``num_jitters`` re-samplings: enrolment's for photos of the
    gallery, the recognize stage's for a search, like the tracks it is compared with;
    quality as ``facepipe enroll`` rates a photo, for the open-set rule's enrolment gate).

    413 for a photo over ``limits.max_image_pixels``; 422 for no image, an unreadable
    one, no face or several faces (the message names the upload)."""
    from pipeline.recognition.enroll import EnrollError, find_one_face

    if not uploads:
        raise ApiError(422, "no photo uploaded")
    if len(uploads) > MAX_FILES:
        raise ApiError(422, f"at most {MAX_FILES} photos per request")
    out = []
    with tempfile.TemporaryDirectory(prefix="facepipe-upload-") as tmp:
        for i, upload in enumerate(uploads):
            name = upload_name(upload, i)
            path = Path(tmp) / f"{i}-{name}"
            path.write_bytes(upload.file.read())
            try:
                image = read_image(path, st.config.limits.max_image_pixels)
            except ImageError as exc:
                message = str(exc).replace(str(path), name)
                raise ApiError(413 if "too large" in message else 422, message) from None
            try:
                face = find_one_face(image, name)
            except EnrollError as exc:
                raise ApiError(422, str(exc)) from None
            out.append((name, *_encode(st, image, face, num_jitters)))
    return out


def _encode(
    st: State, image: np.ndarray, face: Face, num_jitters: int
) -> tuple[np.ndarray, Face, float]:
    from pipeline.recognition.quality import face_quality

    encoder: Any = st.encoder(num_jitters)
    with ENCODE_LOCK:
        vecs, marks = encoder.encode_with_landmarks(image, [face])
    quality = round(face_quality(image, face, marks[0]), 4)
    return np.asarray(vecs[0], dtype=np.float64), face, quality
