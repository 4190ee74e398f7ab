"""Keras models: the from-scratch multi-task CNN and the transfer heads.

Age is predicted as a distribution over ``AGE_BINS`` (0..100 years, one bin per year) and
read out as its expected value (:func:`pipeline.agegender.models.age_from_probs`);
training uses label-distribution learning (a Gaussian around the true age, sigma
``AGE_SIGMA``) plus a small L1 term on the expected value, which is robust to the label
noise UTKFace has and gives a usable spread. Gender is one logit (p(female)) with label
smoothing.

TensorFlow/Keras are imported inside the functions (``facepipe --help`` stays fast).
"""

from __future__ import annotations

from typing import Any

from pipeline.agegender.models import AGE_BINS, INPUT_SIZE

AGE_SIGMA = 2.5  # years, width of the training label distribution
AGE_L1_WEIGHT = 0.05
GENDER_SMOOTHING = 0.05


def _keras() -> Any:
    import keras

    return keras


def age_loss(y_true: Any, logits: Any) -> Any:
    """Cross-entropy to a Gaussian label distribution + L1 on the expected age."""
    from keras import ops

    y = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
    bins = ops.cast(ops.arange(AGE_BINS), "float32")[None, :]
    target = ops.exp(-0.5 * ops.square((bins - y) / AGE_SIGMA))
    target = target / ops.sum(target, axis=-1, keepdims=True)
    logp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    ce = -ops.sum(target * logp, axis=-1)
    expected = ops.sum(ops.exp(logp) * bins, axis=-1)
    return ce + AGE_L1_WEIGHT * ops.abs(expected - y[:, 0])


def age_mae(y_true: Any, logits: Any) -> Any:
    """Mean absolute error (years) of the expected age."""
    from keras import ops

    y = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    bins = ops.cast(ops.arange(AGE_BINS), "float32")[None, :]
    expected = ops.sum(ops.softmax(ops.cast(logits, "float32"), axis=-1) * bins, axis=-1)
    return ops.mean(ops.abs(expected - y))


def compile_multitask(model: Any, learning_rate: Any, weight_decay: float = 1e-4) -> None:
    """Adam(W) with the two losses; gender weighted so both tasks train at similar pace."""
    keras = _keras()
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay),
        loss={
            "age": age_loss,
            "gender": keras.losses.BinaryCrossentropy(
                from_logits=True, label_smoothing=GENDER_SMOOTHING
            ),
        },
        loss_weights={"age": 1.0, "gender": 2.0},
        metrics={
            "age": [age_mae],
            "gender": [keras.metrics.BinaryAccuracy(name="acc", threshold=0.0)],
        },
    )


def _conv_bn(x: Any, filters: int, kernel: int = 3, stride: int = 1) -> Any:
    layers = _keras().layers
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def build_scratch(
    size: int = INPUT_SIZE,
    widths: tuple[int, ...] = (32, 64, 128, 192),
    dropout: float = 0.3,
    stem_stride: int = 2,
) -> Any:
    """The from-scratch CNN: VGG-like conv/BN/ReLU stacks with pooling, then a shared
    dense layer and two heads (``age``: AGE_BINS logits, ``gender``: one logit).

    Input: RGB float 0..255, ``size`` x ``size``. About 0.8 M parameters, ~100 M MACs.
    """
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
    x = _conv_bn(x, widths[0], stride=stem_stride)  # 32 (64 with stem_stride 1)
    if stem_stride == 1:
        x = layers.MaxPooling2D()(x)  # 32
    for i, w in enumerate(widths[1:]):
        x = _conv_bn(x, w)
        x = _conv_bn(x, w)
        if i < len(widths) - 2:
            x = layers.MaxPooling2D()(x)  # 16, 8
    x = layers.MaxPooling2D()(x)  # 4
    x = layers.Conv2D(widths[-1], 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    age = layers.Dense(AGE_BINS, name="age")(x)
    gender = layers.Dense(1, name="gender")(x)
    return keras.Model(inp, {"age": age, "gender": gender}, name="agegender_scratch")


def build_heads(dim: int = 128, hidden: int = 256, dropout: float = 0.3) -> Any:
    """Transfer heads on a frozen network's feature vector (e.g. dlib's 128-d encoding):
    two hidden layers shared by an age (AGE_BINS logits) and a gender (one logit) head."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((dim,), name="features")
    x = layers.Dense(hidden, activation="relu")(inp)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(hidden, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    age = layers.Dense(AGE_BINS, name="age")(x)
    gender = layers.Dense(1, name="gender")(x)
    return keras.Model(inp, {"age": age, "gender": gender}, name="agegender_heads")
