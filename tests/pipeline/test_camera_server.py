"""The local MJPEG camera: OpenCV reads it as an IP camera; down() drops and refuses."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from pipeline.camera_server import MjpegCamera, encode_jpeg


def frames(n: int = 5) -> list[bytes]:
    return [encode_jpeg(np.full((48, 64, 3), 40 * i, np.uint8)) for i in range(n)]


def test_opencv_reads_the_stream_in_order() -> None:
    with MjpegCamera(frames(), fps=50) as cam:
        cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG)
        assert cap.isOpened()
        got = []
        for _ in range(6):
            ok, bgr = cap.read()
            assert ok
            got.append(int(bgr.mean()))
        cap.release()
    assert got[0] < got[1] < got[2] < got[3] < got[4]  # 0, 40, 80, ... (JPEG-rounded)
    assert got[5] == pytest.approx(got[0], abs=3)  # looped


def test_down_refuses_and_up_serves_again() -> None:
    with MjpegCamera(frames(), fps=50) as cam:
        cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG)
        assert cap.read()[0]
        cam.down()
        deadline = time.monotonic() + 5
        while cap.read()[0]:  # the stream ends (buffered frames first)
            assert time.monotonic() < deadline, "the stream did not end"
        cap.release()
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(cam.url, timeout=2)
        assert err.value.code == 503
        cam.up()
        cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG)
        assert cap.read()[0]
        cap.release()
    assert cam.connections == 2


def test_unknown_path_is_404() -> None:
    with MjpegCamera(frames(), fps=50) as cam:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(cam.url.replace("cam.mjpg", "x"), timeout=2)
        assert err.value.code == 404
