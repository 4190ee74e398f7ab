"""``python -m pipeline`` is the ``facepipe`` command."""

from pipeline.cli import main

main()
