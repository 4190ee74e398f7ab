"""Training-time augmentation for the from-scratch CNN (TensorFlow ops, batched).

Geometric: one random similarity transform per image (scale 0.88-1.12 of the crop,
rotation +-12 degrees, shift +-5 %, horizontal flip), reflecting at the borders, so the
model sees detector-box crops that are a little off, as the pipeline gives it.
Photometric: brightness, contrast, saturation, hue, occasional greyscale (IR / old
cameras) and occasional down-then-up scaling (small, blurry faces far from the camera).
"""

from __future__ import annotations

import math
from typing import Any


def augment_batch(images: Any, out_size: int, seed: Any = None) -> Any:
    """``(B, S, S, 3)`` uint8/float images -> augmented ``(B, out, out, 3)`` float32 0..255."""
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
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def center_batch(images: Any, out_size: int) -> Any:
    """Evaluation view: the whole image resized to ``out_size`` (area), float32 0..255."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    return tf.image.resize(x, [out_size, out_size], method="area")
