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
