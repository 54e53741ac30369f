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
    if not os.path.isfile(spec):
        raise ValueError(
            "--representative_data must be a .npy file of model inputs or "
            f"'fashion_mnist'. Received: {spec!r}"
        )
    return np.load(spec)[:count].astype("float32")
