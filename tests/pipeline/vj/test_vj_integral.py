"""Integral image against brute-force numpy sums."""

import numpy as np
import pytest

from pipeline.vj.integral import integral_image, integral_images, rect_sum, window_stats


def test_integral_image_matches_brute_force_sums() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(7, 11)).astype(np.uint8)
    ii = integral_image(img)
    assert ii.shape == (8, 12)
    for y in range(8):
        for x in range(12):
            assert ii[y, x] == img[:y, :x].astype(np.int64).sum()


def test_rect_sum_any_rectangle() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(9, 6))
    ii = integral_image(img)
    for y0 in range(9):
        for x0 in range(6):
            for h in range(1, 9 - y0 + 1):
                for w in range(1, 6 - x0 + 1):
                    assert rect_sum(ii, x0, y0, w, h) == img[y0 : y0 + h, x0 : x0 + w].sum()


def test_squared_and_stacked_integral_images() -> None:
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, size=(3, 5, 4))
    ii2 = integral_images(imgs, square=True)
    for n in range(3):
        assert ii2[n, -1, -1] == (imgs[n].astype(np.int64) ** 2).sum()
        np.testing.assert_array_equal(integral_images(imgs)[n], integral_image(imgs[n]))


def test_window_stats_match_numpy() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(20, 30)).astype(np.float64)
    ii, ii2 = integral_image(img), integral_image(img, square=True)
    width = ii.shape[1]
    ys, xs = np.array([0, 3, 12]), np.array([0, 7, 22])
    mean, std = window_stats(ii, ii2, ys * width + xs, 8)
    for i in range(3):
        win = img[ys[i] : ys[i] + 8, xs[i] : xs[i] + 8]
        assert mean[i] == pytest.approx(win.mean())
        assert std[i] == pytest.approx(win.std())


def test_integral_image_rejects_colour() -> None:
    with pytest.raises(ValueError, match="2-D"):
        integral_image(np.zeros((4, 4, 3)))
