"""Face detector backends: one module per backend (see :mod:`pipeline.registry`)."""

from pipeline.detectors.base import Detector
from pipeline.registry import Registry

registry: Registry[Detector] = Registry("detector", __name__, Detector)

__all__ = ["Detector", "registry"]
