"""facepipe: an event-driven face-analysis pipeline for live video."""

__version__ = "0.1.0"
