"""Viola-Jones face detection written from scratch with numpy.

The four ideas of Viola and Jones (2001), each in its own module:

* :mod:`pipeline.vj.integral` - the integral image: any rectangle sum in four look-ups.
* :mod:`pipeline.vj.features` - Haar-like two-, three- and four-rectangle features,
  stored as a few signed integral-image points each so that thousands of features can be
  evaluated over thousands of windows with array gathers.
* :mod:`pipeline.vj.boost` - AdaBoost with decision stumps; the best stump of every
  feature is found at once by scanning the cumulative weights of pre-sorted feature values.
* :mod:`pipeline.vj.cascade` - the attentional cascade (stages of boosted stumps with
  thresholds tuned for a detection-rate target), its JSON file format, and its vectorised
  evaluation over windows.

:mod:`pipeline.vj.scan` runs a cascade over an image pyramid and merges the raw windows;
:mod:`pipeline.vj.data` builds training crops and negative images; :mod:`pipeline.vj.train`
trains a cascade stage by stage with bootstrapped hard negatives.
"""
