"""The from-scratch CNN face detector: a two-stage Keras cascade (see docs/cnn-detector.md).

``model`` defines the nets, ``boxes`` the geometry (IoU, NMS, box offsets, score-map
decoding), ``crops`` cropping and augmentation, and ``inference`` the whole-image
detector the ``cnn`` backend wraps. Training data and the training loop are
:mod:`training.cnn_detector`. Importing this package does not import TensorFlow.
"""
