"""What every benchmark shares: provenance, resumable rows, workers, alternating timing, tables.

A benchmark script describes its sweep; this module runs the parts every
sweep has. Each row carries where it comes from (`provenance`: command,
commit, machine, library versions, date) and is appended to a `.jsonl` file
as soon as it is measured (`open_rows`, `keep_row`), so `--resume` continues
a stopped sweep. Per-backend measurements run in worker processes
(`run_worker`, `emit`): a Keras backend is chosen once per process. Timings
alternate between the variants compared (`alternating_rounds`), so the
machine's drift is spread over all of them, and are summarised as medians
with their spread (`median_spread`, `per_round_ratios`). Tables are written
from the rows (`markdown_table`, `commands_line`, `write_table`), never by
hand.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import numpy as np
from absl import flags

# Every benchmark that keeps rows takes it: `make results` rewrites each
# table from the committed rows, and a test checks they match.
flags.DEFINE_bool(
    "tables_only", False,
    "Write the tables (and plots) from the rows already in the results files; measure nothing.",
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The libraries whose versions a result depends on.
VERSIONED = ("keras", "tensorflow", "jax", "torch", "numpy", "ai-edge-litert", "keras-hub")
RESULT_PREFIX = "RESULT "


def provenance(module):
    """`{"command", "commit", "machine", "versions", "date"}` for rows written by `python -m <module>` now.

    The commit is marked `+uncommitted` when tracked files differ from it;
    the machine names the CPU model (`/proc/cpuinfo`) where there is one;
    `versions` holds the installed versions of the libraries in `VERSIONED`;
    `date` is the UTC day.
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
        "versions": library_versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }


def library_versions():
    """`{distribution: version}` of the installed libraries in `VERSIONED`."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def emit(row):
    """In a worker process: hands one measured row to the parent (`run_worker`)."""
    print(RESULT_PREFIX + json.dumps(row), flush=True)


def run_worker(argv, backend, env=None, cwd=ROOT):
    """Runs `python <argv>` with `KERAS_BACKEND=backend` and returns the rows it emitted.

    The worker's stderr (its progress) passes through; its stdout lines
    other than the emitted rows are dropped.

    Args:
        argv: The worker's arguments after the Python executable, e.g.
            `["-m", "benchmarks.train_overhead", "--worker=jax"]`.
        backend: The Keras backend of the worker process.
        env: Extra environment variables.
        cwd: The worker's working directory (the repository root).

    Returns:
        The rows, in the order the worker emitted them.

    Raises:
        RuntimeError: If the worker exits with a nonzero status.
    """
    process = subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, "KERAS_BACKEND": backend, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.returncode:
        raise RuntimeError(
            f"Worker `python {' '.join(argv)}` on {backend} failed with exit "
            f"status {process.returncode} (its output is above)."
        )
    return [
        json.loads(line[len(RESULT_PREFIX):])
        for line in process.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]


def alternating_rounds(timers, rounds):
    """Runs each timer once per round, alternating, and returns each one's values per round.

    The order is reversed every other round, so neither the machine's drift
    (other load, clock changes) nor a fixed position in the round is charged
    to one variant.

    Args:
        timers: `{name: callable}`; each call returns one measurement (a
            time, or a median of several).
        rounds: How many rounds.

    Returns:
        `{name: [one value per round]}`.
    """
    values = {name: [] for name in timers}
    names = list(timers)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            values[name].append(timers[name]())
    return values


def litert_rounds(paths, rounds, runs, warmup=5, num_threads=1):
    """LiteRT latency of `.tflite` files timed in alternating rounds.

    Args:
        paths: `{name: .tflite path}`.
        rounds: Alternating rounds.
        runs: Timed single-example invocations of each file per round.
        warmup: Untimed invocations before each file's timed ones.
        num_threads: LiteRT interpreter threads.

    Returns:
        `{name: [each round's median ms]}`.
    """
    import keras_str

    def timer(path):
        return lambda: keras_str.time_tflite(
            path, runs=runs, warmup=warmup, num_threads=num_threads
        )["median_ms"]

    return alternating_rounds({name: timer(path) for name, path in paths.items()}, rounds)


def per_round_ratios(values, baseline):
    """`{name: [value / the baseline's value of the same round]}`."""
    return {
        name: [value / base for value, base in zip(series, values[baseline])]
        for name, series in values.items()
    }


def median_spread(values):
    """`(median, 10th percentile, 90th percentile)` of `values`, as floats."""
    low, median, high = np.percentile(np.asarray(values, dtype=float), [10, 50, 90])
    return float(median), float(low), float(high)


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


def rows_for_tables(out_dir, results):
    """The rows of `<out_dir>/<results>.jsonl`, for `--tables_only`; a `ValueError` when there are none."""
    path = os.path.join(out_dir, f"{results}.jsonl")
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"--tables_only: no rows in {path!r} to write tables from.")
    return rows


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


def markdown_table(header, body):
    """A Markdown table: `header` the column names, `body` rows of cell strings (an empty cell stays empty)."""
    lines = ["|" + "".join(f" {cell} |" for cell in header), "|" + "---|" * len(header)]
    lines += ["|" + "".join(f" {cell} |" if cell != "" else " |" for cell in row) for row in body]
    return "\n".join(lines)


def commands_line(rows):
    """`Commands: ...`: every distinct command the rows came from, for the foot of a table."""
    return "Commands: " + "; ".join(f"`{command}`" for command in sorted({r["command"] for r in rows}))


def write_table(out_dir, results, text):
    """Writes the generated table as `<out_dir>/<results>.md` (atomically) and prints it."""
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(os.path.join(out_dir, f"{results}.md"), text + "\n")
    print("\n" + text)
