"""Viola-Jones face detection written from scratch with numpy (the runtime part).

The ideas of Viola and Jones (2001) needed to *run* a trained cascade:

* :mod:`pipeline.vj.integral` - the integral image: any rectangle sum in four look-ups.
* :mod:`pipeline.vj.features` - Haar-like two-, three- and four-rectangle features,
  stored as a few signed integral-image points each so that thousands of features can be
  evaluated over thousands of windows with array gathers.
* :mod:`pipeline.vj.cascade` - the attentional cascade (stages of boosted stumps with
  thresholds tuned for a detection-rate target), its JSON file format, and its vectorised
  evaluation over windows.

:mod:`pipeline.vj.scan` runs a cascade over an image pyramid and merges the raw windows.
Training (data, AdaBoost, the stage-by-stage cascade training) is :mod:`training.vj`.
"""
