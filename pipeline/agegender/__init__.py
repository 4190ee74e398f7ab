"""Age/gender models facepipe trains itself: data, split, augmentation, models, training.

* :mod:`~pipeline.agegender.split`: the fixed UTKFace train/validation split (by a stable
  hash of the file name), shared by training and evaluation.
* :mod:`~pipeline.agegender.data`: decoding UTKFace once into cached numpy arrays.
* :mod:`~pipeline.agegender.models`: the from-scratch CNN (Keras) and the transfer heads.
* :mod:`~pipeline.agegender.runtime`: light inference (LiteRT / numpy), no TensorFlow.
* :mod:`~pipeline.agegender.training`: the resumable training loop and model cards.

TensorFlow is imported only inside the functions that train or export.
"""
