"""What the command-line tools share: the dependency check, quiet logs, tables, JSON, data.

Nothing here imports keras_str (and so Keras, and TensorFlow on Keras's
default backend) at module level: each tool checks its dependencies and sets
TensorFlow's log level before the first import of keras_str.
"""

import importlib.util
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

# Import name -> pip name, for the tools' dependency check.
EXPORT_DEPENDENCIES = {"tensorflow": "tensorflow", "ai_edge_litert": "ai-edge-litert"}


def require_export_extra(tool, modules=("tensorflow", "ai_edge_litert")):
    """Exits with status 1 and says what to install when one of `modules` is missing.

    keras-str installs without TensorFlow and LiteRT (training needs only
    Keras); the `export` extra brings both.
    """
    missing = [
        EXPORT_DEPENDENCIES[module] for module in modules
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        print(
            f"error: {tool} needs {' and '.join(missing)}, which {verb} not "
            "installed. Install the export extra: pip install 'keras-str[export]'",
            file=sys.stderr,
        )
        sys.exit(1)


HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}


def run_tool(main, module):
    """Runs a tool's `main` under absl: `--help` lists the tool's flags, bad flags exit with status 2.

    absl's `--help` prints the `__main__` module's docstring and the flags
    of the module `sys.argv[0]` names; an installed console script is a
    wrapper with neither, so the tool's usage and flags are handed to it
    (`--helpfull` still lists absl's own flags too).
    """
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_module = sys.modules["__main__"]
    if main_module is not module and not main_module.__doc__:
        main_module.__doc__ = module.__doc__
    tool = os.path.basename(sys.argv[0])

    def parse(argv):
        try:
            return flags.FLAGS(argv)
        except flags.Error as error:
            message = "; ".join(str(error).splitlines())
            print(f"{tool}: error: {message} (see {tool} --help)", file=sys.stderr)
            sys.exit(2)
        except SystemExit as done:
            # absl exits with status 1 after printing the help it was asked for.
            if done.code == 1 and set(argv[1:]) & HELP_FLAGS:
                sys.exit(0)
            raise

    app.run(main, flags_parser=parse)


def quiet():
    logging.set_verbosity(logging.WARNING)


def table(header, rows):
    """Fixed-width text table; first column left-aligned, others right."""
    lines = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(line):
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        ).rstrip()

    out = [render(lines[0]), "-" * len(render(lines[0]))]
    return "\n".join(out + [render(line) for line in lines[1:]])


def write_json(path, data):
    if path:
        from keras_str.core.io_utils import write_text_atomic

        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


def load_representative_data(spec, count=300):
    """A `.npy` file of model inputs, or `fashion_mnist` (training images)."""
    if spec is None:
        return None
    if spec == "fashion_mnist":
        try:
            from examples.data import load_image_classification
            from examples.data import normalize_images
        except ImportError as error:
            raise ValueError(
                "--representative_data fashion_mnist reads the data with the "
                "repository's examples/ package, which is not importable here "
                f"({error}): run the tool from the repository root, or pass a "
                ".npy file of model inputs."
            ) from error

        (x_train, _), _ = load_image_classification("fashion_mnist")
        return normalize_images(x_train[:count])
    from keras_str.core.file_checks import check_input_file

    try:
        check_input_file(spec, "--representative_data")
    except ValueError as error:
        raise ValueError(
            f"{error} It takes a .npy file of model inputs or 'fashion_mnist'."
        ) from error
    try:
        data = np.load(spec, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"--representative_data {spec!r} is not a readable .npy array of model "
            f"inputs (truncated, or another kind of file?): {error}"
        ) from error
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "iuf" or data.ndim < 1:
        raise ValueError(
            f"--representative_data {spec!r} must hold one numeric array of model "
            f"inputs, batch first. Received: {type(data).__name__}"
            + (f" of dtype {data.dtype} and shape {data.shape}" if hasattr(data, "shape") else "")
        )
    return data[:count].astype("float32")
