"""A network camera on 127.0.0.1: a video file (or frames) served as MJPEG over HTTP.

For demos, tests and the soak benchmark: ``facepipe capture http://127.0.0.1:PORT/cam.mjpg``
reads it like any IP camera that serves ``multipart/x-mixed-replace`` JPEG (OpenCV's
FFmpeg backend reads it). The server loops the video at its frame rate and can be taken
*down* (connections dropped, new ones refused) and brought back, as a camera that loses
power or network does::

    with MjpegCamera("clip.mp4", fps=15) as cam:
        cam.url          # http://127.0.0.1:PORT/cam.mjpg
        cam.down()       # clients lose the stream; reconnects are refused
        cam.up()         # it serves again
        cam.frames_sent  # JPEG frames written to clients so far

Command line: ``python -m pipeline.camera_server clip.mp4 --port 8554`` (binds 127.0.0.1
unless ``--host`` says otherwise).
"""

from __future__ import annotations

import argparse
import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

BOUNDARY = b"facepipeframe"


def load_jpegs(video: str | Path, quality: int = 85, limit: int = 10_000) -> list[bytes]:
    """Every frame of ``video`` (up to ``limit``) encoded as JPEG."""
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot read video {video}")
    out: list[bytes] = []
    try:
        while len(out) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            out.append(encode_jpeg(bgr, quality))
    finally:
        cap.release()
    if not out:
        raise ValueError(f"{video}: no frame could be read")
    return out


def encode_jpeg(bgr: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("cannot encode frame as JPEG")
    return buf.tobytes()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegCamera:
    """Serve ``frames`` (JPEG bytes, or a video path) in a loop at ``fps`` over HTTP."""

    def __init__(
        self,
        frames: str | Path | Sequence[bytes],
        fps: float = 15.0,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/cam.mjpg",
    ) -> None:
        self.jpegs = load_jpegs(frames) if isinstance(frames, str | Path) else list(frames)
        if not self.jpegs:
            raise ValueError("no frames to serve")
        self.fps = fps
        self.path = path
        self.frames_sent = 0
        self.connections = 0
        self._up = threading.Event()
        self._up.set()
        self._epoch = 0  # bumped by down(): streams of an older epoch end
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}{self.path}"

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def start(self) -> MjpegCamera:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mjpeg-camera", daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Drop every client and refuse new ones until :meth:`up`."""
        with self._lock:
            self._epoch += 1
            self._up.clear()

    def up(self) -> None:
        self._up.set()

    def close(self) -> None:
        self.down()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MjpegCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if not camera.is_up:
                    self.send_error(503, "camera down")
                    return
                if self.path.split("?")[0] != camera.path:
                    self.send_error(404)
                    return
                with camera._lock:
                    epoch = camera._epoch
                    camera.connections += 1
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
                )
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                camera._stream(self.wfile, epoch)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler

    def _stream(self, out: socket.SocketIO | object, epoch: int) -> None:
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        start = time.monotonic()
        i = 0
        while self.is_up and self._epoch == epoch:
            jpeg = self.jpegs[i % len(self.jpegs)]
            part = (
                b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\n"
                b"Content-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n"
            )
            try:
                out.write(part)  # type: ignore[attr-defined]
                out.flush()  # type: ignore[attr-defined]
            except OSError:
                return  # the client went away
            with self._lock:
                self.frames_sent += 1
            i += 1
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.camera_server",
        description="Serve a video file in a loop as an MJPEG-over-HTTP camera.",
    )
    parser.add_argument("video", help="video file to serve (looped)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (15)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8554, help="TCP port (8554; 0 = any)")
    args = parser.parse_args(argv)
    try:
        camera = MjpegCamera(args.video, fps=args.fps, host=args.host, port=args.port)
    except OSError as exc:
        raise SystemExit(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    with camera:
        print(f"serving {args.video} at {camera.url} ({args.fps:g} fps); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
