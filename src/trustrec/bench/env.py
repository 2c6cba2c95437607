"""Where and with what a result was produced: library versions and host facts."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import pandas
    import scipy
    import torch

    import trustrec

    return {"python": platform.python_version(), "trustrec": trustrec.__version__,
            "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "pandas": pandas.__version__}


def host_info() -> dict[str, Any]:
    """The machine a result was measured on."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover  (not Linux)
        affinity = os.cpu_count()
    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "cpus_usable": affinity,
            "torch_threads": torch.get_num_threads()}
