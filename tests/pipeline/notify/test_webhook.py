"""Webhooks against a local HTTP server: retries, timeouts, filters, secrets, the sink."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.config import WebhookConfig
from pipeline.notify import Notification
from pipeline.notify.webhook import WebhookNotifier, safe_url, split_userinfo


class Hook:
    """A local endpoint: answers ``fail_status`` to the first ``fail_first`` requests,
    then 200; ``hang`` keeps every request waiting (until the test ends)."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503, hang: bool = False):
        self.fail_first, self.fail_status, self.hang = fail_first, fail_status, hang
        self.requests: list[dict[str, Any]] = []
        self.bodies: list[Any] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append({"path": self.path, "headers": dict(self.headers)})
                if hook.hang:
                    hook.release.wait(30)
                    return
                if len(hook.requests) <= hook.fail_first:
                    self.send_response(hook.fail_status)
                    self.end_headers()
                    return
                hook.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hooks() -> Iterator[Any]:
    made: list[Hook] = []

    def make(**kw: Any) -> Hook:
        made.append(Hook(**kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


class Counts:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, backend: str, outcome: str) -> None:
        self.seen.append((backend, outcome))


def note(kind: str = "new", person: str | None = "alice") -> Notification:
    after = {"id": 1, "stream": "door", "person": person, "known": person is not None}
    return Notification(kind, "door", {"type": kind, "before": None, "after": after})  # type: ignore[arg-type]


def webhook(url: str, counts: Counts, **cfg: Any) -> WebhookNotifier:
    return WebhookNotifier(WebhookConfig(url=url, **cfg), counts)


def test_failed_attempts_are_retried_with_backoff_until_one_succeeds(hooks):
    hook, counts = hooks(fail_first=2), Counts()
    w = webhook(hook.url, counts, retries=3, max_backoff_s=0.2)
    t0 = time.monotonic()
    assert w.offer(note())
    assert time.monotonic() - t0 < 0.1  # offer never waits for the endpoint
    assert w.flush(10)
    assert len(hook.requests) == 3 and w.attempts == 3
    assert hook.bodies == [note().message]
    assert hook.requests[-1]["headers"]["Content-Type"] == "application/json"
    assert counts.seen == [("webhook", "sent")]
    w.close()


def test_an_endpoint_that_keeps_failing_is_given_up_after_the_retries(hooks, caplog):
    hook, counts = hooks(fail_first=100), Counts()
    w = webhook(hook.url, counts, retries=2, max_backoff_s=0.05)
    with caplog.at_level(logging.WARNING, "pipeline.notify.webhook"):
        w.offer(note())
        assert w.flush(10)
    assert len(hook.requests) == 3 and counts.seen == [("webhook", "failed")]
    assert "failed after 3 attempt(s) (HTTP 503)" in caplog.text
    w.close()


def test_a_client_error_is_final(hooks):
    hook, counts = hooks(fail_first=100, fail_status=400), Counts()
    w = webhook(hook.url, counts, retries=3, max_backoff_s=0.05)
    w.offer(note())
    assert w.flush(10)
    assert len(hook.requests) == 1 and counts.seen == [("webhook", "failed")]
    w.close()


def test_a_hanging_endpoint_times_out_and_never_blocks_the_caller(hooks):
    hook, counts = hooks(hang=True), Counts()
    w = webhook(hook.url, counts, timeout_s=0.3, retries=1, max_backoff_s=0.05)
    t0 = time.monotonic()
    for _ in range(3):
        w.offer(note())
    assert time.monotonic() - t0 < 0.1
    assert w.flush(10)
    took = time.monotonic() - t0
    assert counts.seen == [("webhook", "failed")] * 3
    assert len(hook.requests) == 6  # 2 attempts each, 0.3 s apiece
    assert 1.5 < took < 5, took
    w.close(0.1)


def test_a_full_queue_drops_and_counts(hooks):
    hook, counts = hooks(hang=True), Counts()
    w = WebhookNotifier(WebhookConfig(url=hook.url, timeout_s=2, retries=0), counts, queue_size=1)
    results = [w.offer(note()) for _ in range(5)]
    # one in flight (hanging), one queued, the others dropped
    assert results.count(False) >= 3 and counts.seen.count(("webhook", "dropped")) >= 3
    hook.release.set()
    w.close(0.1)


def test_events_filter_and_secrets_stay_out_of_logs(hooks, caplog):
    hook, counts = hooks(fail_first=100), Counts()
    url = hook.url.replace("http://", "http://me:s3cret@") + "?token=t0ps3cret"
    w = webhook(url, counts, events=["end"], retries=0, headers={"Authorization": "Bearer xyz"})
    assert not w.offer(note("new"))  # not one of its events
    with caplog.at_level(logging.DEBUG):
        assert w.offer(note("end"))
        assert w.flush(10)
    assert len(hook.requests) == 1 and hook.requests[0]["path"] == "/hook?token=t0ps3cret"
    assert hook.requests[0]["headers"]["Authorization"] == "Bearer xyz"  # headers win
    assert "s3cret" not in caplog.text and "t0ps3cret" not in caplog.text
    assert "xyz" not in caplog.text and "me:***@127.0.0.1" in caplog.text
    assert safe_url("https://h/x?token=a&b=2") == "https://h/x?token=***&b=***"
    assert split_userinfo("https://me:pw@h:1/x?a=1") == ("https://h:1/x?a=1", "Basic bWU6cHc=")
    w.close()


def test_the_sink_posts_an_unknown_person(kit, hooks, make_rt):
    """Through the real sink worker: a stranger's event reaches the webhook as unknown,
    its end too; a retried batch posts nothing more."""
    from pipeline.record import Observations, Samples
    from pipeline.store import EventStore

    hook = hooks()
    rt = make_rt({
        "FACEPIPE__NOTIFY__WEBHOOKS": f"[{{url: '{hook.url}', retries: 0}}]",
        "FACEPIPE__NOTIFY__SNAPSHOT_URL": "http://facepipe.local/api/events/{id}/snapshot.jpg",
    })  # fmt: skip
    EventStore(rt.config.store_url).enroll("alice", [kit.encoding(1)], ["photo"])
    sample = Samples("identity", kit.with_image(rt, kit.frame(1, 1, kit.encoding(5))))
    kit.sink(rt, Observations([kit.frame(0, 1), kit.frame(1, 1)]), sample)
    kit.sink(rt, sample)  # again, as a retried job would
    kit.sink(rt, Observations([kit.frame(2, 1, ended=[1])]))
    deadline = time.monotonic() + 10
    while len(hook.bodies) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert [b["type"] for b in hook.bodies] == ["new", "end"]
    new = hook.bodies[0]
    after = new["after"]
    assert new["before"] is None
    assert after["person"] is None and after["known"] is False and after["confidence"] is None
    assert after["label"] == after["unknown_id"] == "unknown-1"
    assert after["stream"] == kit.STREAM and after["track_id"] == 1 and after["frames"] == 2
    assert after["snapshot"] == f"{kit.STREAM}/{kit.SESSION}/1.jpg"
    assert after["snapshot_url"] == f"http://facepipe.local/api/events/{after['id']}/snapshot.jpg"
    assert after["first_seen"].endswith("Z") and after["end_time"] is None
    end = hook.bodies[1]
    assert end["before"] == after and end["after"]["ended"] is True
    counted = {dict(labels)["outcome"]: v for (n, labels), v in rt.metrics.counter_values().items()
               if n == "facepipe_notifications_total"}  # fmt: skip
    # every outcome's series exists (at 0) from the start, for rate()/increase()
    assert counted == {"sent": 2, "failed": 0, "unconfirmed": 0, "dropped": 0, "expired": 0}
