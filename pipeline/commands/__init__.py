"""CLI sub-commands; each module exposes ``COMMANDS``, a list of click commands.

Keep module-level imports light (no dlib/TensorFlow): import inside the command.
"""
