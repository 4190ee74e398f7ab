"""Training the from-scratch Viola-Jones cascade (the detector itself is :mod:`pipeline.vj`).

* :mod:`training.vj.data` - training crops and face-free negative images.
* :mod:`training.vj.boost` - AdaBoost with decision stumps; the best stump of every
  feature is found at once by scanning the cumulative weights of pre-sorted feature values.
* :mod:`training.vj.train` - the cascade, stage by stage, with bootstrapped hard negatives.
* :mod:`training.vj.bench` - speed of the shipped cascade on video frames.
"""
