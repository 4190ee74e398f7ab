import json

import pytest

from pipeline.record import Face, FrameRecord


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


def test_unknown_fields_are_errors():
    with pytest.raises(ValueError, match="bogus"):
        FrameRecord.from_dict({"stream": "a", "seq": 0, "ts": 0, "bogus": 1})
    with pytest.raises(ValueError, match="colour"):
        Face.from_dict({"box": [0, 0, 1, 1], "colour": "red"})


def test_to_dict_covers_every_field():
    """A field added to the records must also be serialized (to_dict is hand-written)."""
    rec = FrameRecord(stream="a", seq=0, ts=0.0)
    assert set(rec.to_dict()) == {f for f in FrameRecord.__dataclass_fields__}
    face = Face(box=(1, 2, 3, 4), landmarks=[(1.0, 2.0)], encoding=[0.1], track_id=3,
                quality=0.2, name="x", distance=0.1, age=3.0, gender="male",
                gender_confidence=0.7)  # fmt: skip
    assert set(face.to_dict()) == {f for f in Face.__dataclass_fields__}
