"""KalmanTracker on synthetic trajectories: misses, crossings, sparse detection, re-entry."""

import json

import numpy as np
import pytest

from pipeline.record import Face
from pipeline.tracking import IoUTracker, iou
from pipeline.tracking.kalman import KalmanTracker

RNG_ENC = np.random.default_rng(7)
ENC_A = RNG_ENC.normal(0, 0.09, 128)  # |a - b| ~ 1.4: clearly two people
ENC_B = RNG_ENC.normal(0, 0.09, 128)


def enc(base, rng, noise=0.01):
    """An encoding of the same person: the base plus small noise (distance ~0.1)."""
    return (base + rng.normal(0, noise, base.shape)).tolist()


def box_at(x0, y0, vx, vy, size, seq):
    return (x0 + vx * seq, y0 + vy * seq, size, size)


def run(tracker, frames):
    """frames: list of (seq, [Face]); returns a list of per-frame track-id lists."""
    out = []
    for seq, fs in frames:
        tracker.update(fs, seq, ts=float(seq))
        out.append([f.track_id for f in fs])
    return out


def crossing_frames(n=30, occlude=(), with_enc=False, seed=0):
    """A moves right, B moves left, 2 px lower; they overlap around frame 15.

    ``occlude``: frames where only A (in front) is detected.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for seq in range(n):
        a = Face(box=box_at(40, 100, 6, 0, 40, seq))
        b = Face(box=box_at(223, 102, -6, 0, 40, seq))
        if with_enc:
            a.encoding, b.encoding = enc(ENC_A, rng), enc(ENC_B, rng)
        frames.append((seq, [a] if seq in occlude else [a, b]))
    return frames


def test_constant_motion_with_misses_keeps_one_id_and_predicts_the_gap():
    t = KalmanTracker(min_hits=3, max_missed=15)
    missing = {6, 7, 8, 13}
    ids = []
    for seq in range(25):
        truth = box_at(20, 50, 5, 2, 40, seq)
        if seq in missing:
            pred = t.predict(seq)
            assert len(pred) == 1
            assert iou(next(iter(pred.values())), truth) > 0.8
            t.update([], seq)
            assert t.tracks[0].state == "lost"
            continue
        fs = [Face(box=truth)]
        t.update(fs, seq)
        ids.append(fs[0].track_id)
    assert ids[:2] == [None, None]  # tentative for min_hits - 1 frames
    assert len(set(ids[2:])) == 1 and ids[2] is not None
    assert t.tracks[0].state == "confirmed" and t.tracks[0].hits == 25 - len(missing)


def test_crossing_faces_keep_ids_without_encodings():
    frames = crossing_frames()
    a15, b15 = frames[15][1]
    assert iou(a15.box, b15.box) > 0.3  # the boxes really overlap during the crossing
    ids = run(KalmanTracker(min_hits=1), frames)
    assert all(i == ids[0] for i in ids) and ids[0][0] != ids[0][1]


def test_the_crossing_defeats_plain_iou_matching():
    """Sanity check of the scenario: without a motion model the ids swap."""
    ids = run(IoUTracker(min_hits=1), crossing_frames())
    assert any(i != ids[0] for i in ids)


def test_crossing_with_occlusion_keeps_ids_with_encodings():
    occl = {13, 14, 15, 16, 17}  # B hidden behind A for 5 frames
    ids = run(KalmanTracker(min_hits=1), crossing_frames(occlude=occl, with_enc=True))
    a_id, b_id = ids[0]
    assert a_id != b_id
    for seq, frame_ids in enumerate(ids):
        assert frame_ids[0] == a_id
        if seq not in occl:
            assert frame_ids[1] == b_id


def test_crossing_with_encodings_resolves_a_swap_motion_alone_would_make():
    """Faces meet and turn back: the motion model predicts them onwards, i.e. swapped."""
    rng = np.random.default_rng(3)
    xs_a = [40 + 6 * s for s in range(16)] + [130 - 6 * s for s in range(1, 15)]
    xs_b = [220 - 6 * s for s in range(16)] + [130 + 6 * s for s in range(1, 15)]

    def frames(with_enc):
        out = []
        for seq, (xa, xb) in enumerate(zip(xs_a, xs_b, strict=True)):
            a, b = Face(box=(xa, 100, 40, 40)), Face(box=(xb, 102, 40, 40))
            if with_enc:
                a.encoding, b.encoding = enc(ENC_A, rng), enc(ENC_B, rng)
            out.append((seq, [a, b]))
        return out

    ids = run(KalmanTracker(min_hits=1), frames(True))
    assert all(i == ids[0] for i in ids)
    plain = run(KalmanTracker(min_hits=1), frames(False))
    assert any(i != plain[0] for i in plain)  # motion alone follows the wrong face


def test_detection_every_third_frame():
    """8 px/frame = 24 px between runs on 40-px faces: IoU with the last box < 0.3."""
    t = KalmanTracker(min_hits=2)
    ids = []
    for seq in range(0, 60, 3):
        a = Face(box=box_at(10, 40, 8, 0, 40, seq))
        b = Face(box=box_at(10, 200, 8, -1, 40, seq))
        t.update([a, b], seq)
        ids.append((a.track_id, b.track_id))
        for skipped in (seq + 1, seq + 2):
            if a.track_id is not None:
                pred = t.predict(skipped)
                assert iou(pred[a.track_id], box_at(10, 40, 8, 0, 40, skipped)) > 0.7
    assert ids[0] == (None, None)
    assert len(set(ids[1:])) == 1 and None not in ids[1]
    first = box_at(10, 40, 8, 0, 40, 0)
    assert iou(first, box_at(10, 40, 8, 0, 40, 3)) < 0.3  # IoU alone would lose it
    iou_ids = run(
        IoUTracker(min_hits=1),
        [(s, [Face(box=box_at(10, 40, 8, 0, 40, s))]) for s in range(0, 60, 3)],
    )
    assert len({i[0] for i in iou_ids}) > 1


def reentry(second_encoding, encode=True):
    """A face for 10 frames, gone 8 frames, back 150 px away for 10 frames."""
    rng = np.random.default_rng(1)
    t = KalmanTracker(min_hits=3, max_missed=15)
    first, second = [], []
    for seq in range(10):
        f = Face(box=(30 + seq, 60, 50, 50), encoding=enc(ENC_A, rng) if encode else None)
        t.update([f], seq)
        first.append(f.track_id)
    for seq in range(10, 18):
        t.update([], seq)
    for seq in range(18, 28):
        f = Face(box=(190, 70, 50, 50), encoding=enc(second_encoding, rng) if encode else None)
        t.update([f], seq)
        second.append(f.track_id)
    return first[-1], second


def test_reentry_with_the_same_encoding_keeps_the_id():
    old, second = reentry(ENC_A)
    assert old is not None and second == [old] * 10  # no tentative phase again


def test_reentry_with_another_encoding_gets_a_new_id():
    old, second = reentry(ENC_B)
    assert second[:2] == [None, None] and second[2] not in (None, old)


def test_reentry_far_away_without_encodings_gets_a_new_id():
    old, second = reentry(ENC_A, encode=False)
    assert second[2] not in (None, old)


def test_observe_encoding_enables_reidentification():
    """Appearance learned after the fact (recognize stage) re-identifies a lost track."""
    rng = np.random.default_rng(2)
    t = KalmanTracker(min_hits=1)
    f = Face(box=(30, 60, 50, 50))
    t.update([f], 0)
    tid = f.track_id
    assert t.observe_encoding(tid, enc(ENC_A, rng)) == tid
    assert t.get(tid).appearance_n == 1
    assert t.observe_encoding(999, enc(ENC_A, rng)) is None
    t.update([], 1)
    back = Face(box=(200, 60, 50, 50), encoding=enc(ENC_A, rng))
    t.update([back], 2)
    assert back.track_id == tid


def test_a_jump_cut_keeps_the_id_by_appearance():
    """The face jumps far between two consecutive frames (a cut): same person, same id."""
    rng = np.random.default_rng(4)
    t = KalmanTracker(min_hits=3)
    ids = []
    for seq in range(12):
        x = 40 if seq < 6 else 240
        f = Face(box=(x + seq, 80, 40, 40), encoding=enc(ENC_A, rng, noise=0.02))
        t.update([f], seq)
        ids.append(f.track_id)
    assert ids[2:] == [ids[2]] * 10 and ids[2] is not None


def young_track_after_a_gap(old_enc, new_enc, overlap=False, **kw):
    """Track 1 seen on frames 0-7 (encoding observed), then a face elsewhere from frame 10
    (frame 8 too when ``overlap``), without encodings at update time; its encoding is
    observed once it is confirmed (as the recognize stage would)."""
    rng = np.random.default_rng(9)
    t = KalmanTracker(min_hits=3, **kw)
    for seq in range(8):
        fs = [Face(box=(30 + seq, 60, 50, 50))]
        if overlap and seq == 7:
            fs.append(Face(box=(250, 60, 50, 50)))
        t.update(fs, seq)
    old_id = fs[0].track_id
    t.observe_encoding(old_id, enc(old_enc, rng))
    ids = []
    for seq in range(8 if overlap else 10, 20):
        f = Face(box=(250 + seq, 60, 50, 50))
        t.update([f], seq)
        ids.append(f.track_id)
    young = next(i for i in ids if i is not None)
    return t, old_id, young, t.observe_encoding(young, enc(new_enc, rng))


def test_observe_encoding_merges_a_young_track_into_the_lost_one():
    t, old_id, young, result = young_track_after_a_gap(ENC_A, ENC_A)
    assert young != old_id and result == old_id
    assert t.get(young) is None and t.get(old_id).hits == 8 + 10
    assert t.get(old_id).appearance_n == 2
    f = Face(box=(271, 60, 50, 50))
    t.update([f], 21)
    assert f.track_id == old_id
    assert t.update([], 60)[1] == [old_id]  # the merged id is never reported as ended


def test_observe_encoding_does_not_merge_other_people_or_coexisting_tracks():
    _, old_id, young, result = young_track_after_a_gap(ENC_A, ENC_B)
    assert result == young != old_id
    _, old_id, young, result = young_track_after_a_gap(ENC_A, ENC_A, overlap=True)
    assert result == young != old_id  # both were in frame 7: two people
    _, old_id, young, result = young_track_after_a_gap(ENC_A, ENC_A, reid_merge=False)
    assert result == young != old_id


def test_appearance_is_a_running_mean():
    t = KalmanTracker(min_hits=1, appearance_window=30)
    f = Face(box=(0, 0, 40, 40))
    t.update([f], 0)
    t.observe_encoding(f.track_id, [1.0, 0.0])
    t.observe_encoding(f.track_id, [0.0, 1.0])
    t.observe_encoding(f.track_id, [0.5, 0.5])
    assert np.allclose(t.get(f.track_id).appearance, [0.5, 0.5])
    with pytest.raises(ValueError):
        t.observe_encoding(f.track_id, [1.0, 2.0, 3.0])


def scripted_stream():
    """Two crossing faces with encodings on some frames, misses and a sparse stretch."""
    rng = np.random.default_rng(5)
    frames = []
    for seq in list(range(0, 20)) + list(range(21, 40, 2)):
        fs = []
        if seq % 7 != 3:
            fs.append(Face(box=box_at(40, 100, 5, 0, 40, seq)))
        fs.append(Face(box=box_at(240, 110, -5, 0, 42, seq)))
        if seq % 4 == 0:
            fs[-1].encoding = enc(ENC_B, rng)
        if seq == 9:
            fs.append(Face(box=(5, 5, 20, 20)))  # a one-frame false positive
        frames.append((seq, fs))
    return frames


def test_json_round_trip_mid_stream_gives_identical_results():
    ref = KalmanTracker(min_hits=2)
    ref_out = []
    for seq, fs in scripted_stream():
        ref_out.append((ref.update(fs, seq, float(seq)), [f.track_id for f in fs]))

    state = KalmanTracker(min_hits=2).to_dict()
    for (seq, fs), (ref_res, ref_ids) in zip(scripted_stream(), ref_out, strict=True):
        t = KalmanTracker.from_dict(json.loads(json.dumps(state)))  # a new worker each frame
        confirmed, ended = t.update(fs, seq, float(seq))
        assert [c.id for c in confirmed] == [c.id for c in ref_res[0]]
        assert ended == ref_res[1]
        assert [f.track_id for f in fs] == ref_ids
        state = t.to_dict()
    assert state == ref.to_dict()
    assert json.loads(json.dumps(state)) == state  # only JSON types inside


def test_one_frame_false_positives_are_never_confirmed():
    rng = np.random.default_rng(11)
    t = KalmanTracker(min_hits=3)
    started = []
    for seq in range(60):
        real = Face(box=box_at(100, 100, 2, 0, 50, seq))
        fs = [real]
        if seq % 3 == 0:  # a spurious box somewhere else, never twice in a row
            x, y = rng.integers(300, 600), rng.integers(0, 400)
            fs.append(Face(box=(int(x), int(y), 30, 30)))
        confirmed, _ = t.update(fs, seq)
        started += [c.id for c in confirmed]
        if len(fs) > 1:
            assert fs[1].track_id is None
    assert started == [real.track_id]


def test_lifecycle_and_ending_after_max_missed_frames():
    t = KalmanTracker(min_hits=2, max_missed=4)
    f0 = Face(box=(10, 10, 40, 40))
    t.update([f0], 0)
    assert t.tracks[0].state == "tentative"
    f1 = Face(box=(11, 10, 40, 40))
    confirmed, _ = t.update([f1], 1, ts=1.0)
    tid = f1.track_id
    assert [c.id for c in confirmed] == [tid] and confirmed[0].hits == 2
    assert t.get(tid).state == "confirmed"
    for seq in range(2, 6):  # 4 frames missed: still lost, not ended
        assert t.update([], seq) == ([], [])
        assert t.get(tid).state == "lost"
    assert t.update([], 6)[1] == [tid]
    assert t.get(tid) is None


def test_a_seq_jump_beyond_max_missed_ends_the_track():
    t = KalmanTracker(min_hits=1, max_missed=5)
    f = Face(box=(10, 10, 40, 40))
    t.update([f], 0)
    g = Face(box=(10, 10, 40, 40))
    _, ended = t.update([g], 20)  # same place, but 20 frames later
    assert ended == [f.track_id] and g.track_id != f.track_id


def test_end_all_reports_only_confirmed():
    t = KalmanTracker(min_hits=2)
    a = Face(box=(0, 0, 40, 40))
    t.update([a], 0)
    a2, b = Face(box=(1, 0, 40, 40)), Face(box=(300, 0, 40, 40))
    t.update([a2, b], 1)
    assert t.end_all() == [a2.track_id] and t.tracks == []


def test_bad_input_is_rejected():
    t = KalmanTracker()
    t.update([], 5)
    with pytest.raises(ValueError, match="seq must increase"):
        t.update([], 5)
    with pytest.raises(ValueError, match="encoding"):
        t.update([Face(box=(0, 0, 10, 10), encoding=[float("nan")])], 6)
    t.update([Face(box=(0, 0, 10, 10), encoding=[0.1, 0.2])], 6)
    before = t.to_dict()
    with pytest.raises(ValueError, match="differ in length"):
        t.update([Face(box=(0, 0, 10, 10), encoding=[0.1, 0.2, 0.3])], 7)
    assert t.to_dict() == before  # bad input leaves the state as it was
    with pytest.raises(ValueError):
        KalmanTracker(iou_threshold=1.5)
    with pytest.raises(ValueError):
        KalmanTracker.from_dict(
            {
                "tracks": [
                    {"id": 1, "box": [0, 0, 1, 1], "first_seq": 0, "last_seq": 0, "mean": [1.0]}
                ]
            }
        )


def test_many_faces_each_keep_their_id():
    t = KalmanTracker(min_hits=1)
    ids = None
    for seq in range(40):
        fs = [
            Face(box=box_at(20 + 90 * k, 30 + 60 * (k % 2), 3 - k % 3, 2, 44, seq))
            for k in range(6)
        ]
        t.update(fs, seq)
        cur = [f.track_id for f in fs]
        ids = ids or cur
        assert cur == ids
    assert len(set(ids)) == 6


def test_prediction_over_a_gap_equals_stepping_frame_by_frame():
    t = KalmanTracker(min_hits=1)
    for seq in range(5):
        t.update([Face(box=(10 + 4 * seq, 20 + seq, 40, 40))], seq)
    t.tracks[0].mean[7] = 0.0  # constant height: the noise scale is the same each step
    jump = t._predict(t.tracks, 14)
    stepped = KalmanTracker.from_dict(t.to_dict())
    tr = stepped.tracks[0]
    for seq in range(5, 15):
        p = stepped._predict([tr], seq)
        tr.mean, tr.cov, tr.kf_seq = p.mean[0].tolist(), p.cov[0].ravel().tolist(), seq
    assert np.allclose(jump.mean[0], tr.mean)
    assert np.allclose(jump.cov[0].ravel(), tr.cov)


def test_an_iou_tracker_state_continues_as_a_kalman_tracker():
    old = IoUTracker(min_hits=2)
    for seq in range(3):
        old.update([Face(box=(10 + 3 * seq, 10, 40, 40))], seq)
    tid = old.tracks[0].id
    t = KalmanTracker.from_dict(json.loads(json.dumps(old.to_dict())))
    assert t.min_hits == 2 and t.next_id == old.next_id
    f = Face(box=(19, 10, 40, 40))
    t.update([f], 3)
    assert f.track_id == tid and t.get(tid).hits == 4
    with pytest.raises(ValueError, match="unknown"):
        KalmanTracker.from_dict({**t.to_dict(), "colour": 1})


def test_a_shot_cut_to_another_face_in_the_same_place_starts_a_new_track():
    """Another face at another size overlapping the old one (IoU 0.38): not the same track."""
    before, after = (100, 100, 100, 100), (140, 110, 66, 66)
    assert iou(before, after) > 0.3
    for tracker, same in ((KalmanTracker(min_hits=1), False), (IoUTracker(min_hits=1), True)):
        for seq in range(10):
            f = Face(box=before)
            tracker.update([f], seq)
        g = Face(box=after)
        tracker.update([g], 10)
        assert (g.track_id == f.track_id) is same


def test_encodings_that_arrive_after_both_tracks_ended_still_merge():
    """The recognize stage lags: by the time the encodings come, both tracks have ended."""
    rng = np.random.default_rng(11)
    t = KalmanTracker(min_hits=2, max_missed=3)
    for seq in range(6):
        t.update([Face(box=(30 + seq, 60, 50, 50))], seq)
    for seq in range(8, 14):
        t.update([Face(box=(300, 60, 50, 50))], seq)
    ended = t.update([], 30)[1]
    assert ended == [2] and not t.tracks  # track 1 had ended at frame 10
    assert t.observe_encoding(1, enc(ENC_A, rng)) == 1
    assert t.observe_encoding(2, enc(ENC_A, rng)) == 1  # merged
    assert t.observe_encoding(2, enc(ENC_A, rng)) == 1  # later samples follow the alias
    assert t.resolve(2) == 1 and t.aliases == [[2, 1]]
    assert [r.id for r in t.recent] == [1] and t.recent[0].hits == 12
    assert t.recent[0].mean == [] and t.recent[0].cov == []  # an ended track keeps no filter
    # the state, with its memory of ended tracks and aliases, survives JSON
    t2 = KalmanTracker.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2.resolve(2) == 1 and [r.id for r in t2.recent] == [1]


def test_a_merge_revives_an_ended_track_while_the_young_one_lives():
    rng = np.random.default_rng(12)
    t = KalmanTracker(min_hits=2, max_missed=3)
    for seq in range(6):
        t.update([Face(box=(30 + seq, 60, 50, 50))], seq)
    t.observe_encoding(1, enc(ENC_A, rng))
    for seq in range(8, 14):
        f = Face(box=(300, 60, 50, 50))
        t.update([f], seq)
    assert f.track_id == 2 and t.get(1) is None  # 1 ended at frame 10
    assert t.observe_encoding(2, enc(ENC_A, rng)) == 1
    f = Face(box=(300, 60, 50, 50))
    t.update([f], 14)
    assert f.track_id == 1 and t.get(1).state == "confirmed"
    assert t.end_all() == [1]


def test_reid_window_bounds_the_gap_and_memory_is_bounded():
    rng = np.random.default_rng(13)

    def gap_tracker(gap, **kw):
        t = KalmanTracker(min_hits=2, max_missed=3, **kw)
        for seq in range(5):
            t.update([Face(box=(30, 60, 50, 50))], seq)
        t.observe_encoding(1, enc(ENC_A, rng))
        for seq in range(4 + gap, 8 + gap):
            t.update([Face(box=(300, 60, 50, 50))], seq)
        return t

    assert gap_tracker(20, reid_window=20).observe_encoding(2, enc(ENC_A, rng)) == 1
    assert gap_tracker(21, reid_window=20).observe_encoding(2, enc(ENC_A, rng)) == 2
    # ended tracks are forgotten after reid_memory frames, and at most recent_max are kept
    t = gap_tracker(20, reid_memory=10)
    assert t.recent == [] and t.observe_encoding(1, enc(ENC_A, rng)) is None
    t = KalmanTracker(min_hits=1, max_missed=0, recent_max=2)
    for seq in range(0, 20, 2):
        t.update([Face(box=(10 * seq, 0, 40, 40))], seq)
    assert len(t.recent) == 2


def test_an_ambiguous_appearance_is_not_merged():
    """The young track is as close to a face present at the same time (surely someone
    else) as to the lost track: its encoding says little, so no merge."""
    rng = np.random.default_rng(14)
    hub = (ENC_A + ENC_B) / 2  # "between people", like a blurred face or a false detection

    def run(third):
        t = KalmanTracker(min_hits=2, max_missed=10)
        for seq in range(5):
            fs = [Face(box=(30, 60, 50, 50)), Face(box=(400, 200, 50, 50))]
            t.update(fs, seq)
        t.observe_encoding(1, enc(ENC_A, rng))
        t.observe_encoding(2, enc(third, rng))
        for seq in range(7, 10):
            t.update([Face(box=(250, 60, 50, 50)), Face(box=(400, 200, 50, 50))], seq)
        return t.observe_encoding(3, hub + (ENC_A - hub) * 0.4)

    assert run(ENC_B) == 1  # clearly nearer the lost track than the other face: merged
    assert run(hub + (ENC_A - hub) * 0.3) == 3  # nearly as near another face: not merged
