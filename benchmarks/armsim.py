"""Instructions per inference of `.tflite` files on an emulated ARM64 core (`../shared/armsim`)."""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "..", "shared", "armsim")


def check_armsim(armsim_dir=None):
    """Raises `RuntimeError` unless armsim is set up on this machine.

    For benchmarks to call before hours of training, not after: armsim's
    files live outside the repository (`$ARMSIM`, default `/tmp/armsim`) and
    a new machine starts without them.
    """
    home = os.environ.get("ARMSIM", "/tmp/armsim")
    needed = [os.path.join(home, "plugin", "libicount.so"),
              os.path.join(home, "site", "ai_edge_litert")]
    missing = [path for path in needed if not os.path.exists(path)]
    if missing:
        setup = os.path.join(armsim_dir or DEFAULT_DIR, "setup.sh")
        raise RuntimeError(
            f"armsim is not set up on this machine (missing {missing}). Run "
            f"`{setup} $PWD/.venv/bin/python` once (root, Debian's packages), "
            "or leave out --armsim."
        )


def armsim_instructions(paths, armsim_dir=None, core="a76", repeats=3):
    """`{file name: instructions per invoke}` (or the failure line) per path."""
    script = os.path.join(armsim_dir or DEFAULT_DIR, "measure.sh")
    result = subprocess.run(
        ["bash", script, "-c", core, "-n", str(repeats), *paths],
        capture_output=True, text=True, timeout=1800,
    )
    counts = {}
    for line in result.stdout.splitlines():
        match = re.match(r"cortex-\S+ (\S+) insns_per_invoke=(\d+)", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
        elif "FAILED" in line:
            counts[line.split()[1]] = line
    if not counts:
        # No line at all: armsim itself did not run (not set up on this machine?).
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        print(f"armsim gave no counts (exit status {result.returncode}; run "
              f"{os.path.join(armsim_dir or DEFAULT_DIR, 'setup.sh')} once per machine): "
              + " | ".join(tail), flush=True)
    return counts
