"""Benchmark result rows: where they come from (command, commit, machine), and the .jsonl that keeps them."""

import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance(module):
    """`{"command", "commit", "machine"}` for rows written by `python -m <module>` now.

    The commit is marked `+uncommitted` when tracked files differ from it;
    the machine names the CPU model (`/proc/cpuinfo`) where there is one.
    """

    def git(*args):
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()

    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(
                line.split(":", 1)[1].strip() for line in file if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "command": " ".join([f"python -m {module}"] + sys.argv[1:]),
        "commit": git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}",
    }


def read_rows(path):
    """The rows of a `.jsonl` results file, or `[]` when there is none."""
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def append_row(path, row):
    """Appends `row` to a `.jsonl` results file as soon as it is measured (`--resume` keeps it)."""
    with open(path, "a") as file:
        file.write(json.dumps(row) + "\n")


def keep_row(path, rows, row):
    """Adds a measured `row` to `rows` and to the `.jsonl` file at once, and prints it."""
    rows.append(row)
    append_row(path, row)
    print(json.dumps(row), flush=True)


def write_table(out_dir, results, text):
    """Writes the generated table as `<out_dir>/<results>.md` (atomically) and prints it."""
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(os.path.join(out_dir, f"{results}.md"), text + "\n")
    print("\n" + text)
