"""Running the age/gender models facepipe trains itself (no TensorFlow at run time).

* :mod:`~pipeline.agegender.split`: the fixed UTKFace train/dev/validation split (by a
  stable hash of the file name), shared by training and evaluation.
* :mod:`~pipeline.agegender.framing`: where the face is in a UTKFace-like crop.
* :mod:`~pipeline.agegender.images`: reading and resizing face images.
* :mod:`~pipeline.agegender.models`: the models' outputs (age bins) and how to read them.
* :mod:`~pipeline.agegender.runtime`: light inference (LiteRT / numpy).
* :mod:`~pipeline.agegender.stacker`: applying the ensemble's stacker and calibrations.
* :mod:`~pipeline.agegender.vgg16`: VGG16 features for the ``transfer`` backend (Keras,
  imported only when that feature kind is configured).

This package does not import :mod:`pipeline.attributes` (the backends there import it).
Training is :mod:`training.agegender`.
"""
