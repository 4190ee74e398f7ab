"""Pairs of a detector's faces and dlib HOG's boxes (pipeline.evaluation.detector_boxes)."""

from __future__ import annotations

from pipeline.evaluation import detector_boxes as db

LM = [[1, 1]] * 5


def face(box: list[float], score: float = 0.9) -> dict:
    return {"box": box, "score": score, "landmarks": LM}


def test_match_pairs_takes_the_best_overlap_once() -> None:
    faces = [face([0, 0, 40, 50]), face([2, 2, 40, 50]), face([200, 0, 40, 50])]
    hog = [[3, 8, 38, 38], [400, 0, 40, 40]]
    pairs = db.match_pairs(faces, hog)
    assert len(pairs) == 1  # the far HOG box has no partner; one detector face per HOG box
    assert pairs[0]["box"] == [2, 2, 40, 50] and pairs[0]["dlib"] == [3, 8, 38, 38]
    assert pairs[0]["iou"] > db.MATCH_IOU
    assert db.match_pairs([], hog) == [] and db.match_pairs(faces, []) == []


def test_pairs_of_applies_the_score_threshold() -> None:
    images = [
        {
            "key": "a.jpg",
            "source": "wider",
            "size": [100, 100],
            "faces": [face([0, 0, 40, 50], 0.4), face([50, 0, 40, 50], 0.8)],
            "hog": [[2, 6, 38, 38], [52, 6, 38, 38]],
        }
    ]
    assert [p["box"] for p in db.pairs_of(images)] == [[50, 0, 40, 50]]
    assert len(db.pairs_of(images, min_score=0.2)) == 2
    p = db.pairs_of(images)[0]
    assert (p["source"], p["key"], p["size"]) == ("wider", "a.jpg", [100, 100])


def test_mean_iou() -> None:
    out = db.mean_iou([[0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 10, 10]])
    assert out["n"] == 2 and out["mean"] == round((1 + 1 / 3) / 2, 4)
