import json

import pytest

from pipeline.record import (
    Encodings,
    Face,
    FrameRecord,
    Merge,
    Observations,
    Samples,
    SinkMessage,
    TrackJob,
    sink_message_from_dict,
)


def test_face_adapters_agree():
    f = Face.from_trbl((10, 50, 40, 20))  # top, right, bottom, left
    assert f.box == (20, 10, 30, 30)
    assert f.trbl() == (10, 50, 40, 20)
    assert Face.from_xyxy((20, 10, 50, 40)).box == f.box
    assert f.xyxy() == (20, 10, 50, 40)


def test_face_clipped_to_image():
    assert Face(box=(-5, -5, 20, 20)).clipped(10, 12).box == (0, 0, 10, 12)


def test_bad_box_rejected():
    with pytest.raises(ValueError):
        Face(box=(1, 2, 3))  # type: ignore[arg-type]


def test_frame_record_json_round_trip():
    rec = FrameRecord(stream="cam", seq=3, ts=1.5, session="s1", key="k", width=64, height=48)
    rec.faces = [Face(box=(1, 2, 3, 4), score=0.5, landmarks=[(1.0, 2.0)], track_id=7, age=30.0)]
    rec.track_starts = {7: [1.0, 3]}
    text = rec.to_json()
    json.loads(text)  # plain JSON
    back = FrameRecord.from_json(text)
    assert back == rec
    assert back.track_starts == {7: [1.0, 3]}
    assert back.track_uid(7) == "cam/s1/7"


def test_unknown_and_missing_fields_are_errors():
    with pytest.raises(ValueError, match="unknown FrameRecord field.*bogus"):
        FrameRecord.from_dict({"stream": "a", "seq": 0, "ts": 0, "bogus": 1})
    with pytest.raises(ValueError, match="unknown Face field.*colour"):
        Face.from_dict({"box": [0, 0, 1, 1], "colour": "red"})
    with pytest.raises(ValueError, match="missing FrameRecord field.*'seq'"):
        FrameRecord.from_dict({"stream": "a", "ts": 0})
    with pytest.raises(ValueError, match="missing Face field.*'box'"):
        Face.from_dict({"score": 0.5})
    with pytest.raises(ValueError, match="timings"):  # the removed field is not accepted
        FrameRecord.from_dict({"stream": "a", "seq": 0, "ts": 0, "timings": {}})


def test_to_dict_covers_every_field():
    """A field added to the records must also be serialized (to_dict is hand-written)."""
    rec = FrameRecord(stream="a", seq=0, ts=0.0)
    assert set(rec.to_dict()) == {f for f in FrameRecord.__dataclass_fields__}
    face = Face(box=(1, 2, 3, 4), landmarks=[(1.0, 2.0)], encoding=[0.1], track_id=3,
                quality=0.2, name="x", distance=0.1, age=3.0, gender="male",
                gender_confidence=0.7)  # fmt: skip
    assert set(face.to_dict()) == {f for f in Face.__dataclass_fields__}


def _rec(seq: int = 3) -> FrameRecord:
    rec = FrameRecord(stream="cam", seq=seq, ts=1.5, session="s1", key="k")
    rec.faces = [Face(box=(1, 2, 3, 4), track_id=7, encoding=[0.25, 0.5], quality=0.4)]
    return rec


MESSAGES = [
    Observations([_rec(1), _rec(2)]),
    Samples("identity", _rec()),
    Samples("attributes", _rec()),
    Samples("identity+attributes", [_rec(3), _rec(8)]),
    Merge("cam", "s1", 4, 2),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_sink_messages_round_trip_through_json(msg):
    data = json.loads(json.dumps(msg.to_dict()))
    assert data["type"] == msg.TYPE
    back = sink_message_from_dict(data)
    assert back == msg and type(back) is type(msg)
    assert type(msg).from_dict(data) == msg
    assert SinkMessage.from_dict(data) == msg


def test_other_messages_round_trip():
    job = TrackJob("cam", "s1")
    assert TrackJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    enc = Encodings("cam", "s1", 9, _rec().faces)
    assert Encodings.from_dict(json.loads(json.dumps(enc.to_dict()))) == enc


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"stream": "a", "session": "b", "from_id": 1, "into_id": 2}, "'type'"),  # no tag
        ({"type": "kind-of-merge"}, "'type'"),
        ({"type": "merge", "stream": "a", "session": "b", "from_id": 1}, "into_id"),
        ({"type": "merge", "stream": "a", "session": "b", "from": 1, "into_id": 2}, "from"),
        ({"type": "merge", "stream": "a", "session": "b", "from_id": "1", "into_id": 2}, "from_id"),
        ({"type": "samples", "kind": "age", "records": [_rec().to_dict()]}, "kind"),
        ({"type": "samples", "kind": "identity"}, "records"),
        ({"type": "samples", "kind": "identity", "records": [{"stream": "a"}]}, "seq"),
        # the one-sample message of before: refused, naming its field
        ({"type": "samples", "kind": "identity", "record": _rec().to_dict()}, "record"),
        ({"type": "samples", "kind": "identity", "records": _rec().to_dict()}, "records"),
        ({"type": "samples", "kind": "identity", "records": []}, "records"),
        ({"type": "samples", "kind": "identity", "records": [_rec().to_dict(), 5]}, "JSON object"),
        (
            {
                "type": "samples",
                "kind": "identity",
                "records": [_rec().to_dict(), {**_rec().to_dict(), "session": "other"}],
            },
            "one stream session",
        ),
        ({"type": "observations", "records": [{**_rec().to_dict(), "colour": 1}]}, "colour"),
        ({"type": "observations"}, "records"),
    ],
)
def test_bad_sink_messages_are_rejected_naming_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        sink_message_from_dict(data)


def test_a_message_type_reads_only_its_own_tag():
    with pytest.raises(ValueError, match="expected one of \\['merge'\\]"):
        Merge.from_dict(Samples("identity", _rec()).to_dict())
    with pytest.raises(ValueError, match="missing TrackJob field.*session"):
        TrackJob.from_dict({"stream": "cam"})
    with pytest.raises(ValueError, match="JSON object"):
        sink_message_from_dict(["merge"])  # type: ignore[arg-type]


def test_a_frame_batch_round_trips_and_a_batch_of_one_is_a_frame_record():
    from pipeline.record import FrameBatch

    recs = [
        FrameRecord(stream="cam", session="s", seq=i, ts=1.0 + i, key=f"k{i}") for i in range(3)
    ]
    batch = FrameBatch(recs)
    data = json.loads(json.dumps(batch.to_dict()))
    assert list(data) == ["records"]
    assert FrameBatch.from_dict(data) == batch
    one = FrameBatch(recs[:1]).to_dict()
    assert one == recs[0].to_dict()  # a job of one frame, as before batching
    assert FrameBatch.from_dict(one).records == recs[:1]
    assert (batch.stream, batch.session, batch.seq) == ("cam", "s", 0)


def test_a_frame_batch_is_of_one_stream_session_and_not_empty():
    from pipeline.record import FrameBatch

    with pytest.raises(ValueError, match="at least one"):
        FrameBatch([])
    with pytest.raises(ValueError, match="one stream session"):
        FrameBatch([FrameRecord(stream="a", seq=0, ts=0.0), FrameRecord(stream="b", seq=1, ts=0.0)])
    with pytest.raises(ValueError, match="unknown FrameBatch field"):
        FrameBatch.from_dict({"records": [], "extra": 1})
    with pytest.raises(ValueError, match="unknown FrameRecord field"):
        FrameBatch.from_dict({"records": [{"stream": "a", "seq": 0, "ts": 0.0, "x": 1}]})
