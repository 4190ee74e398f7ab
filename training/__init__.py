"""Training, fitting, data-set building and the study's benchmarks (not needed at run time).

Everything that makes the models facepipe ships, beside the runtime in :mod:`pipeline`:

* :mod:`training.commands`: the ``facepipe train ...`` commands (loaded only when
  ``facepipe train`` runs);
* :mod:`training.vj`: Viola-Jones training set, AdaBoost, cascade training, speed benchmark;
* :mod:`training.cnn_detector`: the CNN detector's training data and training loop;
* :mod:`training.agegender`: the age/gender training loop, data caches, augmentation,
  Keras model definitions and the ensemble/calibration fit.

This package imports :mod:`pipeline` (to reuse the inference code and the model formats);
``pipeline`` and ``workers`` never import it (``tests/test_import_boundaries.py``).
"""
