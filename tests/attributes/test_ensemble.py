from skimage.data import astronaut

from pipeline.attributes import registry
from pipeline.record import Face

FACE = Face(box=(175, 76, 90, 90))


def test_ensemble_is_the_mean_of_its_members():
    img = astronaut()
    (s,) = registry.create("scratch").estimate(img, [FACE])
    (t,) = registry.create("transfer").estimate(img, [FACE])
    (e,) = registry.create("ensemble").estimate(img, [FACE])
    assert abs(e.age - (s.age + t.age) / 2) < 1e-6
    assert abs(e.p_female - (s.p_female + t.p_female) / 2) < 1e-6
    assert e.gender in ("male", "female") and 0.5 <= e.gender_confidence <= 1.0
    assert 10 < e.age < 70
    assert registry.create("ensemble").estimate(img, []) == []
