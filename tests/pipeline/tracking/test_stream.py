"""StreamTracker: the track stage's per-stream logic, in memory (no Redis)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import SamplingConfig, TrackerConfig
from pipeline.record import Face, FrameRecord
from pipeline.tracking.stream import StreamState, StreamTracker

EYES_NOSE = [(120.0, 70.0), (140.0, 70.0), (130.0, 80.0)]


def frame(seq: int, *boxes: tuple[int, int, int, int], **kw) -> FrameRecord:
    rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq, key=f"k{seq}", **kw)
    rec.faces = [Face(box=b, score=0.9, landmarks=EYES_NOSE) for b in boxes]
    return rec


def tracker(**kw) -> StreamTracker:
    tcfg = TrackerConfig(min_hits=2, **{k: v for k, v in kw.items() if k != "every_n"})
    # no answers come back in these tests: no limit on samples waiting for one
    sampling = SamplingConfig(every_n_frames=kw.get("every_n", 5), max_in_flight=None)
    return StreamTracker(tcfg, sampling)


def test_samples_are_the_first_face_then_the_best_of_each_window():
    st = tracker()
    sampled = []
    for seq in range(14):
        rec = frame(seq, (100, 50, 60, 60), last=seq == 13)
        face = rec.faces[0]
        face.score = 0.99 if seq == 4 else 0.5
        if seq == 9:  # a turned head: nose under one eye
            face.score, face.landmarks = 0.99, [(120.0, 70.0), (140.0, 70.0), (121.0, 80.0)]
        out, samples = st.step(rec)
        assert out is rec
        sampled += samples
    # confirmed at 1 (min_hits 2); best of 2-6 is the confident face at 4; 7-11 are equal
    # but for the turned head at 9 (not chosen); 12-13 pending when the track ends
    assert [r.seq for r in sampled] == [1, 4, 7, 12]
    assert all(r.key == f"k{r.seq}" and r.faces[0].track_id == 1 for r in sampled)
    assert all(r.faces[0].quality is not None for r in sampled)
    assert st.state.next_seq == 14 and not st.state.candidates


def test_confirmation_cut_and_last_frame():
    st = tracker()
    recs = [st.step(frame(s, (100 + s, 50, 60, 60), cut=s == 4, last=s == 7))[0] for s in range(8)]
    assert recs[0].faces[0].track_id is None  # tentative
    assert recs[1].track_starts == {1: [1.0, 2, 0]}  # confirmed, covering frame 0
    assert recs[4].ended_tracks == [1]  # the cut ends every track first
    assert recs[5].faces[0].track_id == 2 and recs[5].track_starts
    assert recs[7].ended_tracks == [2]  # the last frame ends the rest


def test_skipped_frames_carry_predicted_faces_of_tracks_seen_in_the_latest_detection():
    st = tracker()
    for s in range(3):
        st.step(frame(s, (100 + 2 * s, 50, 60, 60)))
    rec, samples = st.step(FrameRecord(stream="cam", session="s", seq=3, ts=4.0, detected=False))
    assert [f.track_id for f in rec.faces] == [1] and rec.faces[0].score == 0.0
    assert abs(rec.faces[0].box[0] - 106) <= 1  # moved on with the track's velocity
    assert samples == []  # samples only from detected frames
    st.step(frame(4))  # detection ran, nobody there: the track is lost
    rec, _ = st.step(FrameRecord(stream="cam", session="s", seq=5, ts=6.0, detected=False))
    assert rec.faces == []


def test_a_dropped_frame_only_moves_the_stream_on():
    st = tracker()
    st.step(frame(0, (100, 50, 60, 60)))
    lost = FrameRecord(stream="cam", session="s", seq=1, ts=2.0, dropped="lost")
    rec, samples = st.step(lost)
    assert rec.faces == [] and samples == [] and st.state.next_seq == 2
    with pytest.raises(ValueError, match="comes after"):
        st.step(frame(1))


def _encoding(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=128)
    return (v / np.linalg.norm(v) * 0.5).round(6).tolist()


def _cut_scene(st: StreamTracker) -> None:
    """Track 1 on the left (frames 0-9), nobody (10-12), track 2 far right (13-19)."""
    for s in range(20):
        boxes = [(20 + 2 * s, 40, 100, 120)] if s < 10 else []
        if s >= 13:
            boxes = [(400 + 2 * s, 40, 100, 120)]
        st.step(frame(s, *boxes))


def test_observe_merges_a_young_track_into_the_one_it_continues():
    st = tracker()
    _cut_scene(st)
    same = _encoding(1)
    first = st.observe([Face(box=(0, 0, 9, 9), track_id=1, encoding=same, quality=0.5)])
    assert first.merged == [] and first.aliased == []
    got = st.observe([Face(box=(0, 0, 9, 9), track_id=2, encoding=same, quality=0.5)])
    assert got.merged == [(2, 1)] and got.all() == [(2, 1)]
    assert st.tracker.resolve(2) == 1
    # the next frame of the young track carries the survivor's id
    rec, _ = st.step(frame(20, (440, 40, 100, 120)))
    assert rec.faces[0].track_id == 1
    # a late sample of the merged id: not a new merge, but reported again for the sink
    again = st.observe([Face(box=(0, 0, 9, 9), track_id=2, encoding=same, quality=0.5)])
    assert again.merged == [] and again.aliased == [(2, 1)]


def test_observe_ignores_low_quality_faces_and_other_people():
    st = tracker()
    st.min_quality = 0.3
    _cut_scene(st)
    st.observe([Face(box=(0, 0, 9, 9), track_id=1, encoding=_encoding(1), quality=0.5)])
    blurred = Face(box=(0, 0, 9, 9), track_id=2, encoding=_encoding(1), quality=0.1)
    assert st.observe([blurred]).all() == []  # below min_quality: not used
    other = Face(box=(0, 0, 9, 9), track_id=2, encoding=_encoding(2), quality=0.9)
    assert st.observe([other]).all() == []  # someone else
    assert st.tracker.resolve(2) == 2


def test_observe_does_nothing_with_the_iou_model():
    st = tracker(model="iou")
    _cut_scene(st)
    face = Face(box=(0, 0, 9, 9), track_id=2, encoding=_encoding(1), quality=0.9)
    assert st.observe([face]).all() == []


def test_a_restored_state_continues_exactly_like_the_original():
    a, b = tracker(), tracker()
    for s in range(6):
        a.step(frame(s, (100 + 3 * s, 50, 60, 60)))
        b.step(frame(s, (100 + 3 * s, 50, 60, 60)))
    data = json.loads(json.dumps(b.state.to_dict()))  # through JSON, as in Redis
    b = StreamTracker(b.tracker_config, b.sampling, StreamState.from_dict(data, b.tracker_config))
    for s in range(6, 15):
        ra, sa = a.step(frame(s, (100 + 3 * s, 50, 60, 60), last=s == 14))
        rb, sb = b.step(frame(s, (100 + 3 * s, 50, 60, 60), last=s == 14))
        assert ra == rb and sa == sb
    assert a.state.to_dict() == b.state.to_dict()


def test_a_track_whose_name_is_settled_is_not_sampled_again():
    st = StreamTracker(TrackerConfig(min_hits=2), SamplingConfig(every_n_frames=4, settle_after=2))
    sampled: list[int] = []

    def named(seq: int, name: str | None) -> None:  # the recognize stage's answer
        got = Face(box=(100, 50, 60, 60), track_id=1, encoding=[0.1] * 128, name=name)
        got.quality = 0.9
        st.observe([got])

    for seq in range(30):
        _, samples = st.step(frame(seq, (100, 50, 60, 60)))
        sampled += [s.seq for s in samples]
        if seq == 1:
            named(seq, None)  # unknown: no vote for a name
        if seq in (5, 9):
            named(seq, "ann")
    # confirmed at 1, then one per window of 4 frames (2, 6, 10, 14 up to max_samples 5);
    # settled by the 2nd "ann" (at 9): nothing after
    assert sampled == [1, 2, 6] and st.settled(1)
    assert json.loads(json.dumps(st.state.to_dict()))["names"] == {"1": {"ann": 2}}
    restored = StreamState.from_dict(json.loads(json.dumps(st.state.to_dict())), TrackerConfig())
    assert restored.names == {1: {"ann": 2}}


def test_without_settling_a_named_track_gets_every_sample():
    st = StreamTracker(
        TrackerConfig(min_hits=2), SamplingConfig(every_n_frames=2, settle_after=None)
    )
    count = 0
    for seq in range(30):
        _, samples = st.step(frame(seq, (100, 50, 60, 60)))
        count += sum(len(s.faces) for s in samples)
        if samples:
            st.observe([Face(box=(100, 50, 60, 60), track_id=1, name="ann")])
    assert count == 5 and not st.settled(1)


def test_the_next_sample_waits_for_answers_and_is_the_best_face_meanwhile():
    st = StreamTracker(TrackerConfig(min_hits=2), SamplingConfig(every_n_frames=2, max_in_flight=2))
    sampled: list[int] = []
    for seq in range(12):
        rec = frame(seq, (100, 50, 60, 60))
        rec.faces[0].score = 0.99 if seq == 7 else 0.5
        _, samples = st.step(rec)
        sampled += [s.seq for s in samples]
    assert sampled == [1, 2]  # two in flight: the third waits
    assert st.in_flight(1, st.tracker.get(1).samples) == 2
    st.observe([Face(box=(100, 50, 60, 60), track_id=1, encoding=[0.1] * 128, quality=0.9)])
    _, samples = st.step(frame(12, (100, 50, 60, 60)))
    assert [s.seq for s in samples] == [7]  # the best face seen while waiting
    assert st.state.answered == {1: 1} and st.state.names == {}


def test_sparse_load_driven_detection_keeps_one_track_and_predicts_between_runs():
    """A live camera under load: detection runs at irregular gaps of up to
    capture.max_undetected + 1 frames, one run misses the face. With the default tracker
    (min_hits 3 runs, max_missed 15 frames, max_tentative_missed 1 run) the face is one
    track, confirmed on its third detection run, never ended by the gaps, and each frame
    detection skipped carries its predicted box."""
    from pipeline.config import CaptureConfig
    from pipeline.tracking import iou

    gap_max = CaptureConfig().max_undetected + 1
    st = StreamTracker(TrackerConfig(), SamplingConfig(max_in_flight=None))

    def true_box(seq: int) -> tuple[int, int, int, int]:
        return (20 + 4 * seq, 60, 40, 40)  # 4 px a frame: 24 px between runs at gap 6

    runs = [0, 1, 7, 13, 16, 22, 28, 34, 40]
    missed = {22}  # the detector misses the face once: 12 frames without a match
    assert max(b - a for a, b in zip(runs, runs[1:], strict=False)) == gap_max
    ids, starts = set(), []
    for seq in range(41):
        if seq in runs:
            rec = frame(seq, *([] if seq in missed else [true_box(seq)]))
        else:
            rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq, detected=False,
                              undetected="load")  # fmt: skip
        out, _ = st.step(rec)
        assert out.ended_tracks == []
        starts += list(out.track_starts)
        for f in out.faces:
            if f.track_id is not None:
                ids.add(f.track_id)
                assert iou(f.box, true_box(seq)) > 0.5, (seq, f.box)
        if not rec.detected and seq > 7 and not 22 <= seq < 28:
            assert [f.track_id for f in out.faces] == [1]  # predicted where it is
    assert ids == {1} and starts == [1]
    assert st.tracker.get(1).hits == len(runs) - len(missed)


def test_capture_defaults_keep_tracks_alive_over_one_missed_run_at_the_sparsest():
    """capture.max_undetected bounds the gap between a live camera's detection runs; a
    track matched, missed once, then matched again spans two such gaps and must stay
    within tracker.max_missed (else every load peak would split tracks into new events)."""
    from pipeline.config import CaptureConfig

    gap = CaptureConfig().max_undetected + 1
    assert 2 * gap <= TrackerConfig().max_missed + 1
