"""Facts about this machine for ``get_system_info``: CPU, memory, GPUs. Linux first (``/proc``),
with portable fallbacks; every probe degrades to "unknown" rather than failing the tool."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from .schemas import CpuInfo, GpuInfo, MemoryInfo

__all__ = ["cpu_info", "gpu_info", "memory_info"]


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    model = ""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            # x86 says "model name"; some ARM kernels only "Hardware" or "Processor"
            if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS / Windows
        usable = None
    return CpuInfo(
        model=model or platform.processor() or "unknown",
        cores=os.cpu_count() or 0,
        usable_cores=usable,
        architecture=platform.machine(),
    )


def memory_info(meminfo: Path = Path("/proc/meminfo")) -> MemoryInfo:
    try:
        fields: dict[str, int] = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
        if "MemTotal" in fields:
            # MemAvailable (kernel 3.14+) counts reclaimable cache; MemFree alone understates it.
            free = fields.get("MemAvailable", fields.get("MemFree"))
            return MemoryInfo(total_bytes=fields["MemTotal"], available_bytes=free, source=str(meminfo))
    except (OSError, ValueError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = page * os.sysconf("SC_PHYS_PAGES")
        try:
            available: int | None = page * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError):  # not on macOS
            available = None
        return MemoryInfo(total_bytes=total, available_bytes=available, source="sysconf")
    except (AttributeError, ValueError, OSError):
        return MemoryInfo(total_bytes=None, available_bytes=None, source="none")


def _int_or_none(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:  # "[N/A]" on some boards
        return None


def gpu_info(timeout: float = 5.0) -> list[GpuInfo]:
    """NVIDIA GPUs through nvidia-smi when it is on PATH; none otherwise (or when it fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,memory.used,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
            stdin=subprocess.DEVNULL,  # never our stdin: on stdio that is the MCP stream
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 4 and cols[0]:
            gpus.append(
                GpuInfo(
                    name=cols[0],
                    memory_total_mib=_int_or_none(cols[1]),
                    memory_used_mib=_int_or_none(cols[2]),
                    driver=cols[3] or None,
                )
            )
    return gpus
