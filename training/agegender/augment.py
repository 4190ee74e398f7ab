"""Training-time augmentation for the from-scratch CNN (TensorFlow ops, batched).

Geometric: one random similarity transform per image (scale 0.88-1.12 of the crop,
rotation +-12 degrees, shift +-5 %, horizontal flip), reflecting at the borders, so the
model sees detector-box crops that are a little off, as the pipeline gives it.
Photometric: brightness, contrast, saturation, hue, occasional greyscale (IR / old
cameras) and occasional down-then-up scaling (small, blurry faces far from the camera).
Video-like degradations (:func:`degrade_batch`, opt-in with ``degrade`` > 0): per image,
low resolution (down to 14-36 px and back), Gaussian or motion blur, sensor noise and
JPEG at quality 10-60, as faces look in compressed, far-away video frames.
"""

from __future__ import annotations

import math
from typing import Any

DEGRADE_LOWRES = (14, 20, 26, 36)
"""Side (px) a degraded face is shrunk to before it is scaled back (one per image)."""
DEGRADE_PARTS = {"lowres": 0.5, "blur": 0.45, "noise": 0.4, "jpeg": 0.6}
"""Probability of each degradation for an image chosen to be degraded."""


def _uniform(seed: Any, k: int, shape: Any, lo: float, hi: float, dtype: Any = None) -> Any:
    """Uniform random numbers: stateless from ``seed`` (+ stream ``k``) when given."""
    import tensorflow as tf

    dtype = dtype or tf.float32
    if seed is None:
        return tf.random.uniform(shape, lo, hi, dtype=dtype)
    s = tf.cast(tf.convert_to_tensor(seed), tf.int64) + tf.constant([0, 1], tf.int64) * k
    return tf.random.stateless_uniform(shape, s, lo, hi, dtype=dtype)


def blur_kernels() -> list:
    """5 x 5 blur kernels (numpy, each sums to 1): Gaussian sigma 0.7 / 1.1 / 1.6 and
    5 px motion blur (horizontal, vertical, both diagonals)."""
    import numpy as np

    ax = np.arange(5) - 2.0
    out = []
    for sigma in (0.7, 1.1, 1.6):
        g = np.exp(-0.5 * (ax / sigma) ** 2)
        out.append(np.outer(g, g) / np.outer(g, g).sum())
    h = np.zeros((5, 5))
    h[2, :] = 1.0
    for k in (h, h.T, np.eye(5), np.fliplr(np.eye(5))):
        out.append(k / k.sum())
    return out


def degrade_batch(x: Any, prob: float = 0.5, seed: Any = None) -> Any:
    """Video-like degradations of a ``(B, S, S, 3)`` float batch in 0..1 (same shape out).

    Each image is degraded with probability ``prob``; a degraded image gets each of
    :data:`DEGRADE_PARTS` with its own probability, in camera order: low resolution
    (shrunk to one of :data:`DEGRADE_LOWRES` px, area, then scaled back bilinearly),
    blur (one of :func:`blur_kernels`), Gaussian noise (sigma 1-5 % of the range), JPEG
    at quality 10-60. ``seed``: a ``[2]`` integer tensor for stateless, repeatable
    randomness (tests); ``None`` uses TensorFlow's global random state.
    """
    import numpy as np
    import tensorflow as tf

    x = tf.convert_to_tensor(x, tf.float32)
    b = tf.shape(x)[0]
    size = tf.shape(x)[1:3]
    on = _uniform(seed, 1, [b], 0.0, 1.0) < prob

    def apply(x: Any, k: int, name: str, fn: Any) -> Any:
        """``fn`` on the images that get this part only (the others are not computed)."""
        chosen = tf.logical_and(on, _uniform(seed, k, [b], 0.0, 1.0) < DEGRADE_PARTS[name])
        idx = tf.where(chosen)  # (n, 1)
        sub = tf.gather_nd(x, idx)
        choice = tf.gather_nd(_uniform(seed, k + 1, [b], 0.0, 1.0), idx)
        # no image chosen: skip (padding an empty batch is an error)
        return tf.cond(
            tf.shape(idx)[0] > 0,
            lambda: tf.tensor_scatter_nd_update(x, idx, fn(sub, choice)),
            lambda: x,
        )

    def lowres(sub: Any, u: Any) -> Any:  # one of a few sizes per image
        which = tf.cast(u * len(DEGRADE_LOWRES), tf.int32)
        out = sub
        for i, side in enumerate(DEGRADE_LOWRES):
            up = tf.image.resize(tf.image.resize(sub, [side, side], method="area"), size)
            out = tf.where(tf.equal(which, i)[:, None, None, None], up, out)
        return out

    kernels = blur_kernels()
    bank = tf.constant(np.stack(kernels, -1)[:, :, None, :], tf.float32)

    def blur(sub: Any, u: Any) -> Any:
        # one kernel per image; all kernels as one convolution of the colour planes (a
        # depthwise convolution is ~10x slower on CPU), borders reflected
        n = tf.shape(sub)[0]
        which = tf.cast(u * len(kernels), tf.int32)
        padded = tf.pad(sub, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
        planes = tf.reshape(tf.transpose(padded, [0, 3, 1, 2]), [-1, size[0] + 4, size[1] + 4, 1])
        y = tf.nn.conv2d(planes, bank, 1, "VALID")  # (n*3, S, S, K)
        y = tf.reshape(y, [n, 3, size[0], size[1], len(kernels)])
        y = tf.gather(y, which, axis=4, batch_dims=1)  # (n, 3, S, S)
        return tf.transpose(y, [0, 2, 3, 1])

    def noise(sub: Any, u: Any) -> Any:  # sensor noise, sigma 1-5 % of the range
        sigma = (0.01 + 0.04 * u)[:, None, None, None]
        if seed is None:
            z = tf.random.normal(tf.shape(sub))
        else:
            s = tf.cast(tf.convert_to_tensor(seed), tf.int64) + tf.constant([0, 99], tf.int64)
            z = tf.random.stateless_normal(tf.shape(sub), s)
        return tf.clip_by_value(sub + sigma * z, 0.0, 1.0)

    def jpeg(sub: Any, u: Any) -> Any:  # quality 10-60; the encoder takes one image at a time
        quality = 10 + tf.cast(u * 51.0, tf.int32)
        out = tf.map_fn(
            lambda a: tf.image.adjust_jpeg_quality(a[0], a[1]),
            (tf.clip_by_value(sub, 0.0, 1.0), quality),
            fn_output_signature=tf.float32,
        )
        return tf.reshape(out, tf.shape(sub))

    x = apply(x, 2, "lowres", lowres)
    x = apply(x, 4, "blur", blur)
    x = apply(x, 6, "noise", noise)
    x = apply(x, 8, "jpeg", jpeg)
    return tf.clip_by_value(x, 0.0, 1.0)


def augment_batch(images: Any, out_size: int, seed: Any = None, degrade: float = 0.0) -> Any:
    """``(B, S, S, 3)`` uint8/float images -> augmented ``(B, out, out, 3)`` float32 0..255.

    ``degrade``: probability that an image also gets video-like degradations
    (:func:`degrade_batch`); 0 (default) is the augmentation the shipped model had."""
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    b = tf.shape(images)[0]
    in_size = tf.cast(tf.shape(images)[1], tf.float32)
    out = float(out_size)

    scale = tf.random.uniform([b], 0.88, 1.12)  # crop side relative to the whole image
    angle = tf.random.uniform([b], -12.0, 12.0) * (math.pi / 180.0)
    shift = tf.random.uniform([b, 2], -0.05, 0.05) * in_size
    flip = tf.where(tf.random.uniform([b]) < 0.5, -1.0, 1.0)
    s = scale * in_size / out
    cos, sin = tf.cos(angle) * s, tf.sin(angle) * s
    c_out = (out - 1.0) / 2.0
    c_in = (in_size - 1.0) / 2.0
    # output (x, y) -> input: c_in + shift + R*S*(flip*(x - c_out), y - c_out)
    a0 = cos * flip
    a1 = -sin
    b0 = sin * flip
    b1 = cos
    a2 = c_in + shift[:, 0] - a0 * c_out - a1 * c_out
    b2 = c_in + shift[:, 1] - b0 * c_out - b1 * c_out
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([out_size, out_size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )

    x = x / 255.0
    x = tf.image.random_brightness(x, 0.12)
    x = tf.image.random_contrast(x, 0.7, 1.3)
    x = tf.image.random_saturation(x, 0.6, 1.4)
    x = tf.image.random_hue(x, 0.03)
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
    use_gray = tf.random.uniform([b, 1, 1, 1]) < 0.08
    x = tf.where(use_gray, gray, x)
    # low resolution: 25 % of batches are shrunk to 20-48 px and scaled back
    small = tf.random.uniform([], 20, 49, dtype=tf.int32)
    low = tf.image.resize(tf.image.resize(x, [small, small], antialias=True), [out_size, out_size])
    x = tf.cond(tf.random.uniform([]) < 0.25, lambda: low, lambda: x)
    if degrade > 0:
        x = degrade_batch(tf.clip_by_value(x, 0.0, 1.0), degrade)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def center_batch(images: Any, out_size: int) -> Any:
    """Evaluation view: the whole image resized to ``out_size`` (area), float32 0..255."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    return tf.image.resize(x, [out_size, out_size], method="area")
