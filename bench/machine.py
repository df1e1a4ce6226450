"""Description of the machine and versions a benchmark ran on."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from lakehouse import versions


def describe() -> dict[str, Any]:
    """Cores, memory, CPU model, load, and the versions that matter for the numbers."""
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "spark": versions.SPARK_VERSION,
        "delta": versions.DELTA_VERSION,
        "prefect": metadata.version("prefect"),
    }
