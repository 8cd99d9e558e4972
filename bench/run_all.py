"""Every benchmark, one after the other, each in a process of its own: ``python -m bench.run_all [--quick]``."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path
from typing import Final

from bench.processes import REPO, machine_load

BENCHMARKS: Final = ("hotpath", "e2e", "scale", "mqtt_relay", "state_size", "doorbell")
TIMEOUT: Final = 3600.0


def machine() -> str:
    """The CPU model, core count, Python and kernel, for the record."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    return f"{model}; Python {platform.python_version()}; Linux {platform.release()}; {machine_load()}"


def main(argv: list[str] | None = None) -> None:
    """Run the chosen benchmarks (all by default) and stop at the first that fails."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of {', '.join(BENCHMARKS)} (default: all)")
    options = parser.parse_args(argv)
    unknown = set(options.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    print(f"machine: {machine()}\n", flush=True)
    for name in options.names or BENCHMARKS:
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if options.quick else [])]
        subprocess.run(command, cwd=REPO, check=True, timeout=TIMEOUT)
    print(f"after: {machine_load()}", flush=True)


if __name__ == "__main__":
    main()
