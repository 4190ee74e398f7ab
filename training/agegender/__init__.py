"""Training facepipe's age/gender models (inference: :mod:`pipeline.agegender`).

* :mod:`~training.agegender.data`: decoding UTKFace once into cached numpy arrays.
* :mod:`~training.agegender.augment`: image augmentation (TensorFlow).
* :mod:`~training.agegender.models`: the from-scratch CNN (Keras) and the transfer heads.
* :mod:`~training.agegender.training`: the resumable training loop and model cards.
* :mod:`~training.agegender.stacking`: fitting the ensemble's stacker and the calibrations.

TensorFlow is imported only inside the functions that train or export.
"""
