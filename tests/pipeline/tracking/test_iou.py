import json

from pipeline.record import Face
from pipeline.tracking import IoUTracker, iou


def faces(*boxes):
    return [Face(box=b) for b in boxes]


def test_iou_values():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 10, 10)) - 50 / 150) < 1e-9


def test_track_confirmed_after_min_hits_and_keeps_id():
    t = IoUTracker(min_hits=3)
    seen = []
    for seq in range(5):
        fs = faces((100 + 2 * seq, 50, 40, 40))
        confirmed, ended = t.update(fs, seq, ts=float(seq))
        seen.append(fs[0].track_id)
        if seq == 2:
            assert len(confirmed) == 1
            assert confirmed[0].hits == 3 and confirmed[0].first_ts == 0.0
        else:
            assert confirmed == []
    assert seen[:2] == [None, None]  # tentative
    assert seen[2] == seen[3] == seen[4] is not None


def test_one_frame_false_positive_never_becomes_a_track():
    t = IoUTracker(min_hits=3)
    t.update(faces((0, 0, 20, 20)), 0)
    for seq in range(1, 5):
        confirmed, ended = t.update([], seq)
        assert confirmed == [] and ended == []
    assert t.tracks == []


def test_two_faces_crossing_paths_keep_their_ids():
    t = IoUTracker(min_hits=1)
    ids = None
    for seq in range(10):
        a = (10 + 8 * seq, 100, 40, 40)  # moving right
        b = (160 - 8 * seq, 300, 40, 40)  # moving left, other row: boxes never overlap
        fs = faces(a, b)
        t.update(fs, seq)
        cur = [f.track_id for f in fs]
        ids = ids or cur
        assert cur == ids


def test_missed_frames_tolerated_then_track_ends():
    t = IoUTracker(min_hits=1, max_missed=2)
    fs = faces((0, 0, 30, 30))
    t.update(fs, 0)
    tid = fs[0].track_id
    assert t.update([], 1) == ([], [])
    again = faces((1, 1, 30, 30))
    t.update(again, 2)
    assert again[0].track_id == tid  # back after one miss
    for seq in (3, 4):
        assert t.update([], seq)[1] == []
    assert t.update([], 5)[1] == [tid]  # third miss in a row ends it


def test_state_round_trips_through_json():
    t = IoUTracker(min_hits=2)
    t.update(faces((0, 0, 30, 30)), 0, ts=5.0)
    t.update(faces((2, 0, 30, 30)), 1, ts=6.0)
    t2 = IoUTracker.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2 == t
    fs = faces((3, 0, 30, 30))
    t2.update(fs, 2)
    assert fs[0].track_id == t.tracks[0].id


def test_end_all_reports_only_confirmed():
    t = IoUTracker(min_hits=2)
    a = faces((0, 0, 30, 30), (200, 0, 30, 30))
    t.update(a, 0)
    b = faces((0, 0, 30, 30))
    t.update(b, 1)
    assert t.end_all() == [b[0].track_id]
