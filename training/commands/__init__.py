"""Training commands: each module exposes ``COMMAND``, a click command that becomes
``facepipe train <name>``. Keep module-level imports light (import TensorFlow inside).
"""
