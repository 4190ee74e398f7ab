"""Face detector backends: one module per backend (see :mod:`pipeline.registry`).

``auto`` is not a backend but a choice made when the configuration is loaded
(:func:`resolve`): the first backend of :data:`AUTO_ORDER` whose libraries are
installed. ``yunet`` comes from the ``yuface`` wheel, which exists for CPython 3.11 on
x86-64 Linux only; everywhere else ``auto`` is ``blazeface`` (docs/detectors.md,
"Which detector for the pipeline").
"""

from pipeline.detectors.base import Detector
from pipeline.registry import BackendError, Registry

registry: Registry[Detector] = Registry("detector", __name__, Detector)

AUTO = "auto"
# what `auto` picks, best first: the first one installed here
AUTO_ORDER = ("yunet", "blazeface")


def installed(name: str) -> bool:
    """Whether backend ``name``'s libraries are installed (checked without loading them)."""
    try:
        return registry.get(name).installed()
    except BackendError:
        return False


def resolve(name: str) -> str:
    """The backend ``name`` stands for: ``auto`` -> the first installed backend of
    :data:`AUTO_ORDER` (the last one when none says it is: its own error then tells why);
    any other name is itself."""
    if name != AUTO:
        return name
    for candidate in AUTO_ORDER:
        if installed(candidate):
            return candidate
    return AUTO_ORDER[-1]


__all__ = ["AUTO", "AUTO_ORDER", "Detector", "installed", "registry", "resolve"]
