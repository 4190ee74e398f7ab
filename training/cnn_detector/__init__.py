"""Training the from-scratch CNN face detector (inference: :mod:`pipeline.cnn_detector`).

``data`` builds the training sources (face photos with calibrated boxes, face-free
scenes, crops); ``train`` is the resumable training loop with hard-negative mining.
"""
