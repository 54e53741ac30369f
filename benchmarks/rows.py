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
    """The rows of a `.jsonl` results file, or `[]` when there is none.

    A last line without its newline is a row a stopped run was writing:
    it is dropped (that run is redone) with a note. Any other line that is
    not a JSON object is a `ValueError` naming the file and the line.
    """
    if not os.path.exists(path):
        return []
    from keras_str.core.file_checks import check_input_file

    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return []
    check_input_file(path, "Results file")
    with open(path) as file:
        lines = file.read().split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # no newline after it: cut short
                print(f"note: {path}: line {number} is incomplete (a stopped run); "
                      "its run is done again.", file=sys.stderr)
                continue
            raise ValueError(
                f"Results file {path!r}, line {number}, is not a JSON row: {error}. "
                "Fix or remove the line (or start again without --resume)."
            ) from error
        if not isinstance(row, dict):
            raise ValueError(
                f"Results file {path!r}, line {number}, is not a JSON object: {line[:80]!r}"
            )
        rows.append(row)
    return rows


def read_json(path):
    """A results `.json` file's content; a `ValueError` naming the file when it is not JSON."""
    from keras_str.core.file_checks import check_input_file

    check_input_file(path, "Results file")
    with open(path) as file:
        try:
            return json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"Results file {path!r} is not valid JSON (truncated or edited?): "
                f"{error}. Fix it, or start again without --resume."
            ) from error


def append_row(path, row):
    """Appends `row` to a `.jsonl` results file as soon as it is measured (`--resume` keeps it)."""
    with open(path, "a") as file:
        if file.tell() and not _ends_with_newline(path):
            file.write("\n")  # after a line a stopped run left incomplete
        file.write(json.dumps(row) + "\n")


def _ends_with_newline(path):
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def open_rows(out_dir, results, resume):
    """`(path, rows)` of `<out_dir>/<results>.jsonl`: its rows with `resume`, else none (the file removed)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{results}.jsonl")
    if resume:
        return path, read_rows(path)
    if os.path.exists(path):
        os.remove(path)
    return path, []


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
