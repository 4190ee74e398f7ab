"""The tracker state in Redis (through the bus) and the stream lock (redis-py's Lock)."""

from __future__ import annotations

import threading
import time

import pytest

import pipeline.tracking.state as state_mod
from pipeline.bus import Bus, connect
from pipeline.config import TrackerConfig
from pipeline.record import Face
from pipeline.tracking.kalman import KalmanTracker
from pipeline.tracking.state import TrackerStates
from pipeline.tracking.stream import StreamState


@pytest.fixture()
def states(redis_url) -> TrackerStates:
    return TrackerStates(Bus(connect(redis_url), "t"), TrackerConfig(min_hits=1))


def test_a_new_stream_starts_fresh_and_a_saved_one_continues(states):
    fresh = states.load("cam", "s")
    assert isinstance(fresh.tracker, KalmanTracker) and fresh.next_seq == 0
    fresh.tracker.update([Face(box=(10, 10, 50, 50))], 0)
    fresh.next_seq = 1
    states.save("cam", "s", fresh)
    back = states.load("cam", "s")
    assert back.to_dict() == fresh.to_dict()
    assert states.load("cam", "other").next_seq == 0  # keyed by stream and session
    assert states.bus.load_tracker_state("cam", "s") == fresh.to_dict()


def test_a_second_holder_is_refused_until_the_first_releases(states):
    with states.locked("cam", "s") as held:
        assert held
        with states.locked("cam", "s") as second:
            assert not second  # a track job's one try
        with states.locked("cam", "other") as other:
            assert other  # another stream's lock is another lock
    with states.locked("cam", "s") as again:
        assert again


def test_a_waiting_holder_gets_the_lock_when_it_is_released(states):
    release = threading.Event()

    def holder() -> None:
        with states.locked("cam", "s") as held:
            assert held
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    time.sleep(0.05)
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    with states.locked("cam", "s", wait_s=3.0) as held:
        assert held and 0.1 < time.monotonic() - t0 < 2.0
    t.join()


def test_a_dead_holders_lock_expires(states, monkeypatch):
    monkeypatch.setattr(state_mod, "LOCK_S", 0.3)
    dead = states.bus.tracker_lock("cam", "s", state_mod.LOCK_S)
    assert dead.acquire(blocking=False)  # a worker that takes it and dies
    with states.locked("cam", "s") as held:
        assert not held
    time.sleep(0.45)
    with states.locked("cam", "s") as held:
        assert held
        # the late owner cannot release the new holder's lock
        with pytest.raises(Exception, match="(?i)lock"):
            dead.release()
        with states.locked("cam", "s") as second:
            assert not second


def test_a_holder_whose_lock_expired_releases_quietly(states, monkeypatch, caplog):
    monkeypatch.setattr(state_mod, "LOCK_S", 0.2)
    with states.locked("cam", "s") as held:
        assert held
        time.sleep(0.3)
        with states.locked("cam", "s") as other:  # another worker took over
            assert other
    assert "expired while held" in caplog.text


def test_a_stream_saved_by_the_iou_tracker_continues_with_kalman(states):
    iou = TrackerStates(states.bus, TrackerConfig(model="iou"))
    st = iou.load("cam", "s")
    assert type(st.tracker).__name__ == "IoUTracker"
    iou.save("cam", "s", st)
    assert isinstance(StreamState.from_dict(states.bus.load_tracker_state("cam", "s"),
                                            TrackerConfig()).tracker, KalmanTracker)  # fmt: skip
