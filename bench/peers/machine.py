# SPDX-License-Identifier: MIT
"""bench/peers/machine.py: what the numbers were measured on: CPU model, cores, load, versions."""
import os
import platform
import subprocess


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average():
    """The 1-minute load average, or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def nodal_commit(repo):
    """The repository's HEAD commit (short), '+dirty' with local changes; None without git."""
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (head + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe(torch, torchdiffeq, repo):
    """The machine and software, as one JSON-ready dict."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": getattr(torchdiffeq, "__version__", None),
        "nodal_commit": nodal_commit(repo),
    }
