"""MJPEG cameras read as they come: each JPEG as the camera sent it (header checked, never
decoded), with or without Content-Length; garbage refused; non-multipart URLs fall back
to OpenCV; the capture stores the camera's bytes in Redis unchanged."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import cv2
import numpy as np
import pytest

from pipeline.camera_server import MjpegCamera, encode_jpeg
from pipeline.mjpeg import MjpegError, MjpegStream, NotMjpeg, jpeg_size
from pipeline.shots import WIDTH as SHOT_WIDTH
from pipeline.sources import Frame, Source


def _picture(w: int = 64, h: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_jpeg_size_reads_the_header_of_baseline_and_progressive_jpegs():
    img = _picture(71, 33)
    base = encode_jpeg(img)
    ok, prog = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    assert jpeg_size(base) == (71, 33)
    assert jpeg_size(prog.tobytes()) == (71, 33)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world, not a picture",
        cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
        b"\xff\xd8\xff\xd9",  # start then end of image: no picture
    ],
    ids=["empty", "text", "png", "empty-jpeg"],
)
def test_jpeg_size_refuses_what_is_not_a_jpeg(data):
    with pytest.raises(MjpegError):
        jpeg_size(data)


def test_jpeg_size_refuses_a_header_cut_short():
    data = encode_jpeg(_picture())
    sos = data.index(b"\xff\xda")
    with pytest.raises(MjpegError):
        jpeg_size(data[: sos - 20])  # cut inside the tables before the start of scan


def test_a_camera_s_jpegs_come_out_byte_for_byte(demo_media):
    with MjpegCamera(demo_media["video"], fps=100) as cam:
        stream = MjpegStream.open(cam.url, timeout_s=5)
        try:
            got = [stream.read() for _ in range(len(cam.jpegs) + 3)]
        finally:
            stream.release()
    n = len(cam.jpegs)
    assert got == [cam.jpegs[i % n] for i in range(n + 3)]


@contextmanager
def _serve(write: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A one-route HTTP server on 127.0.0.1 whose GET handler is ``write``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            try:
                write(self)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cam"
    finally:
        server.shutdown()
        server.server_close()


def _multipart(parts: list[bytes], length: bool, boundary: str = "frame") -> Callable:
    def write(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", f'multipart/x-mixed-replace; boundary="{boundary}"')
        h.end_headers()
        for data in parts:
            head = b"--" + boundary.encode() + b"\r\nContent-Type: image/jpeg\r\n"
            if length:
                head += b"Content-Length: " + str(len(data)).encode() + b"\r\n"
            h.wfile.write(head + b"\r\n" + data + b"\r\n")
        h.wfile.write(b"--" + boundary.encode() + b"--\r\n")
        h.wfile.flush()

    return write


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "boundary-only"])
def test_parts_with_or_without_content_length(length):
    # trailing bytes after a JPEG's end (decoders ignore them) that look like a boundary
    jpegs = [encode_jpeg(_picture(seed=i)) + b"\r\n--frame-not\r\n\n" for i in range(4)]
    jpegs.append(encode_jpeg(np.full((30, 40, 3), 10, np.uint8)))
    with _serve(_multipart(jpegs, length)) as url:
        stream = MjpegStream.open(url, timeout_s=5)
        got = [stream.read() for _ in jpegs]
        with pytest.raises(ConnectionError):
            stream.read()  # the closing boundary: the camera ended the stream
        stream.release()
    assert got == jpegs


def test_a_part_that_is_not_a_jpeg_is_refused():
    parts = [encode_jpeg(_picture()), b"<html>camera error</html>"]
    with _serve(_multipart(parts, length=True)) as url:
        stream = MjpegStream.open(url, timeout_s=5)
        assert jpeg_size(stream.read()) == (64, 48)
        with pytest.raises(MjpegError, match="not a JPEG"):
            stream.read()
        stream.release()


def test_a_non_multipart_answer_is_not_mjpeg():
    def page(h: http.server.BaseHTTPRequestHandler) -> None:
        body = b"<html>login</html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with _serve(page) as url, pytest.raises(NotMjpeg, match="text/html"):
        MjpegStream.open(url, timeout_s=5)


def _first_frame(src: Source, timeout: float = 15.0) -> Frame:
    got: list[Frame] = []

    def read() -> None:
        for f in src:
            got.append(f)
            break

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    src.stop()
    src.close()
    assert got, "no frame"
    return got[0]


def test_a_source_passes_an_mjpeg_camera_s_jpegs_through(demo_media):
    with MjpegCamera(demo_media["video"], fps=30) as cam:
        frame = _first_frame(Source(cam.url, timeout_s=5))
        assert frame.jpeg in cam.jpegs  # as sent
        pixels = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert frame.size == (pixels.shape[1], pixels.shape[0])
        small = frame.preview(pixels.shape[1] // 4)
        assert small.shape[1] == -(-pixels.shape[1] // 4)  # a quarter-size decode
        assert np.array_equal(frame.bgr, pixels)  # decoded on demand
        # passthrough off: the same camera through OpenCV/FFmpeg (pixels, no JPEG)
        opencv = _first_frame(Source(cam.url, timeout_s=5, passthrough=False))
    assert opencv.jpeg is None and opencv.size == frame.size


def test_a_url_that_is_not_mjpeg_is_read_through_opencv(tmp_path, demo_media):
    # an MJPG-coded AVI served as a plain file: FFmpeg reads it, the MJPEG reader does not
    avi = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(str(demo_media["video"]))
    writer = None
    for _ in range(10):
        ok, bgr = cap.read()
        if not ok:
            break
        if writer is None:
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")
            writer = cv2.VideoWriter(str(avi), fourcc, 10, (bgr.shape[1], bgr.shape[0]))
        writer.write(bgr)
    assert writer is not None
    writer.release()
    body = avi.read_bytes()

    def serve(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "video/x-msvideo")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with _serve(serve) as url:
        frame = _first_frame(Source(url, timeout_s=5))
    assert frame.jpeg is None and frame.bgr.ndim == 3


def _frames_through_a_bad_part(bad: bytes) -> tuple[bytes, list[Frame], Source, int]:
    """A camera whose first connection sends a good JPEG then ``bad``, every later one
    good JPEGs only: the frames a Source gives, the source, and the connections made."""
    good = encode_jpeg(_picture())
    served = []

    def camera(h: http.server.BaseHTTPRequestHandler) -> None:
        served.append(1)
        _multipart([good, bad] if len(served) == 1 else [good] * 50, length=True)(h)
        time.sleep(0.5)

    with _serve(camera) as url:
        src = Source(url, reconnect_s=0.05, reconnect_max_s=0.1, timeout_s=5)
        frames: list[Frame] = []

        def read() -> None:
            for f in src:
                frames.append(f)
                if len(served) >= 2 and len(frames) >= 3:
                    break

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(15)
        src.stop()
        src.close()
    return good, frames, src, len(served)


def test_garbage_from_a_camera_is_an_outage_not_a_frame():
    good, frames, src, connections = _frames_through_a_bad_part(b"garbage" * 100)
    assert connections >= 2  # the garbage ended the connection; the source reconnected
    assert frames and all(f.jpeg == good for f in frames)
    assert src.status().reconnects >= 1


def test_a_jpeg_whose_data_does_not_decode_is_an_outage_not_a_frame():
    """A part with a whole JPEG header but no picture after it passes the header check;
    the reader decodes its preview and refuses it like garbage (before, it reached the
    capture, whose shot detector raised on it and stopped the capture)."""
    good = encode_jpeg(_picture())
    broken = good[: good.index(b"\xff\xda") + 14]  # up to the start of scan, no data
    jpeg_size(broken)  # the header check alone lets it through
    sent, frames, src, connections = _frames_through_a_bad_part(broken)
    assert sent == good
    assert connections >= 2 and src.status().reconnects >= 1
    assert frames and all(f.jpeg == good for f in frames)
    # the preview the reader decoded is the one the capture's shot detector gets
    assert frames[0].preview(SHOT_WIDTH) is frames[0].preview(SHOT_WIDTH)
