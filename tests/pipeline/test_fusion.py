import numpy as np

from pipeline.fusion import fuse_attributes, fuse_identity

A = np.random.default_rng(0).normal(size=128) * 0.1
B = np.random.default_rng(1).normal(size=128) * 0.1


def noisy(center, n, scale, seed=0):
    """``n`` encodings around ``center``; the same for the same arguments, in any test order."""
    return center + np.random.default_rng(seed).normal(size=(n, 128)) * scale


def test_mean_encoding_names_the_right_person():
    encs = noisy(A, 5, 0.02)
    got = fuse_identity(encs, ["a", "b"], np.stack([A, B]), threshold=0.6)
    assert got.name == "a" and got.agreement == 1.0 and got.samples == 5
    assert got.distance < 0.6


def test_far_from_everyone_is_unknown_not_nearest():
    far = A + 1.0
    got = fuse_identity(far[None, :], ["a", "b"], np.stack([A, B]), threshold=0.6)
    assert got.name is None and got.distance > 0.6


def test_averaging_rescues_noisy_samples():
    # each sample alone is beyond the threshold, their mean is within it
    encs = noisy(A, 12, 0.07)
    single = np.linalg.norm(encs - A, axis=1)
    assert (single > 0.6).all()
    assert fuse_identity(encs, ["a"], A[None, :], threshold=0.6).name == "a"


def test_empty_gallery_is_unknown():
    assert fuse_identity(noisy(A, 2, 0.01), [], np.zeros((0, 128)), 0.6).name is None


def test_attributes_median_and_abstain():
    f = fuse_attributes([30, 32, 90, 31], [0.9, 0.8, 0.95, 0.85])
    assert f.age == 31.5  # median ignores the outlier
    assert f.gender == "female" and abs(f.gender_confidence - 0.875) < 1e-9
    unsure = fuse_attributes([30, 30], [0.55, 0.45], min_confidence=0.6)
    assert unsure.gender is None
    assert fuse_attributes([], []).age is None


def test_track_between_two_people_is_unknown_not_the_nearer():
    """The open-set rule's margin: a track about as near two enrolled people is neither."""
    step = np.random.default_rng(3).normal(size=128)
    C = A + 0.5 * step / np.linalg.norm(step)  # a look-alike of A, 0.5 away
    mid = (A + C) / 2
    encs = noisy(mid, 6, 0.002)
    got = fuse_identity(encs, ["a", "c"], np.stack([A, C]), threshold=0.6)
    assert np.linalg.norm(mid - A) < 0.3  # well within the threshold of both
    assert got.name is None and got.nearest in ("a", "c") and "margin" in got.reason
    clear = fuse_identity(noisy(A, 6, 0.002), ["a", "c"], np.stack([A, C]), threshold=0.6)
    assert clear.name == "a" and clear.margin > 0.3 and clear.threshold <= 0.6


def test_the_same_track_is_unknown_against_a_large_gallery():
    """1:N: among many enrolled people, a face 0.5 from its nearest with others close
    behind (a stranger's situation) is not named; with one other (far) person enrolled
    it is."""
    rng = np.random.default_rng(5)

    def around(center, distance):
        v = rng.normal(size=128)
        return center + distance * v / np.linalg.norm(v)

    track = around(A, 0.5)  # 0.5 from A
    crowd = np.stack([around(track, 0.58 + 0.002 * i) for i in range(999)])
    small = fuse_identity(track[None, :], ["a", "x"], np.stack([A, around(track, 1.2)]), 0.6)
    names = ["a", *(f"p{i}" for i in range(999))]
    large = fuse_identity(track[None, :], names, np.vstack([A, crowd]), 0.6)
    assert small.name == "a"
    assert large.name is None and large.nearest == "a" and "999" not in large.reason
    assert "1000 people" in large.reason
