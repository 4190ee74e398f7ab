"""A small registry of backends: one file per backend, found by its file name.

A backend package (``pipeline.detectors``, ``pipeline.attributes``, ...) holds one module
per backend; the module ``dlib_cnn.py`` provides the backend named ``dlib-cnn``. Modules
are imported only when their backend is asked for, so listing backends never loads
TensorFlow, and a backend whose dependencies are missing fails with an error that says
why, without breaking the others.

Each backend class declares its options as a pydantic model ``Options`` with
``extra="forbid"``, so a misspelt option is an error that names the key. A backend
module imports its heavy libraries (TensorFlow, dlib, ...) inside the backend's
``__init__``, never at module level: the configuration imports the chosen backend's
module at load to validate its options (:class:`pipeline.config.BackendSection`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class BackendOptions(BaseModel):
    """Base class for a backend's options (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")


class Backend:
    """Base of every backend class."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()


class BackendError(LookupError):
    """A backend name is unknown, its module failed to import, or its options are bad."""


T = TypeVar("T", bound=Backend)


def module_name(backend: str) -> str:
    return backend.replace("-", "_")


def backend_name(module: str) -> str:
    return module.replace("_", "-")


class Registry(Generic[T]):
    """Backends of one kind, discovered from the modules of one package."""

    def __init__(self, kind: str, package: str, base: type[T]) -> None:
        self.kind = kind
        self.package = package
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def names(self) -> list[str]:
        pkg = importlib.import_module(self.package)
        return sorted(
            backend_name(m.name)
            for m in pkgutil.iter_modules(pkg.__path__)
            if not m.name.startswith("_") and m.name != "base"
        )

    def get(self, name: str) -> type[T]:
        if name in self._classes:
            return self._classes[name]
        if name not in self.names():
            raise BackendError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            )
        try:
            module = importlib.import_module(f"{self.package}.{module_name(name)}")
        except ImportError as exc:
            raise BackendError(
                f"{self.kind} {name!r} is unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        found = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type)
            and issubclass(obj, self.base)
            and getattr(obj, "name", None) == name
        ]
        if len(found) != 1:
            raise BackendError(
                f"module {module.__name__} must define exactly one {self.base.__name__} "
                f"subclass named {name!r}, found {len(found)}"
            )
        self._classes[name] = found[0]
        return found[0]

    def options(
        self, name: str, given: dict[str, Any] | BackendOptions | None = None
    ) -> BackendOptions:
        """Backend ``name``'s validated options (its ``Options`` model) from ``given``;
        a bad key or value is a :class:`BackendError` naming ``KIND.options.KEY``."""
        cls = self.get(name)
        if isinstance(given, cls.Options):
            return given
        if isinstance(given, BackendOptions):
            given = given.model_dump(exclude_unset=True)
        try:
            return cls.Options(**(given or {}))
        except ValidationError as exc:
            raise BackendError(
                f"bad options for {self.kind} {name!r}: {option_problems(exc, self.kind)}"
            ) from exc

    def create(self, name: str, options: dict[str, Any] | BackendOptions | None = None) -> T:
        """A backend by name, with its options (a dict or its ``Options`` model)."""
        return self.get(name)(self.options(name, options))

    def from_config(self, section: BackendChoice) -> T:
        """The backend a config section chooses (``backend`` + its ``options``)."""
        return self.create(section.backend, section.options)


class BackendChoice(Protocol):
    """What :meth:`Registry.from_config` needs of a config section."""

    backend: str
    options: BackendOptions


def option_problems(exc: ValidationError, kind: str) -> str:
    """``KIND.options.KEY: message`` for each error of an ``Options`` model."""
    return "; ".join(
        f"{kind}.options.{'.'.join(str(p) for p in err['loc'])}: "
        + ("unknown option" if err["type"] == "extra_forbidden" else err["msg"])
        for err in exc.errors()
    )
