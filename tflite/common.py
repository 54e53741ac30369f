"""What the tflite/ command-line tools share: quiet logs, tables, JSON, data."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from keras_str.io_utils import write_text_atomic  # noqa: E402


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
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


def load_representative_data(spec, count=300):
    """A `.npy` file of model inputs, or `fashion_mnist` (training images)."""
    if spec is None:
        return None
    if spec == "fashion_mnist":
        from examples.data import load_image_classification
        from examples.data import normalize_images

        (x_train, _), _ = load_image_classification("fashion_mnist")
        return normalize_images(x_train[:count])
    if not os.path.isfile(spec):
        raise ValueError(
            "--representative_data must be a .npy file of model inputs or "
            f"'fashion_mnist'. Received: {spec!r}"
        )
    return np.load(spec)[:count].astype("float32")
