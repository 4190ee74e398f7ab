"""Age/gender backends: one module per backend (see :mod:`pipeline.registry`)."""

from pipeline.attributes.base import AgeGender, AttributeEstimator, crop_face
from pipeline.registry import Registry

registry: Registry[AttributeEstimator] = Registry("attributes", __name__, AttributeEstimator)

__all__ = ["AgeGender", "AttributeEstimator", "crop_face", "registry"]
