"""What machine a measurement ran on (for benchmark and evaluation reports)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """``"<cpu>, N cores, Python X.Y.Z"``."""
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def info(**versions: str) -> dict[str, object]:
    """The machine for a results file: CPU, cores, Python, the given library versions and
    the load average when the measurement started (the machine is often shared)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": "none",
        "python": platform.python_version(),
        **versions,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
