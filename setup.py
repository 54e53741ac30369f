import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_str" / "__init__.py").read_text()
).group(1)

TENSORFLOW = "tensorflow==2.21.*"
EXTRAS = {
    # Sparse .tflite export, LiteRT checks and the keras-str-* tools.
    "export": [TENSORFLOW, "ai-edge-litert"],
    # The tfmot gradual-magnitude-pruning baseline (tf_keras models).
    "tfmot": ["tf-keras==2.21.*", "tensorflow-model-optimization==0.8.1", TENSORFLOW],
    # tensorflow-datasets for the examples' data.
    "data": ["tensorflow-datasets", "importlib_resources", TENSORFLOW],
    "plots": ["matplotlib"],
    # SparsityMonitor(log_dir=...) writes TensorBoard summaries with tf.summary.
    "tensorboard": ["tensorboard", TENSORFLOW],
    # Keras backends other than TensorFlow. Pick one; the PyPI torch wheel
    # for Linux is the CUDA build (see docs/install.md for the CPU build).
    "jax": ["jax"],
    "torch": ["torch"],
    # keras-hub's transformers (BERT, GPT-2, Gemma, ViT) are part of the
    # tested model zoo; 0.32 installs without changing keras or tensorflow.
    "keras-hub": ["keras-hub==0.32.*"],
    # `make docs`: the documentation site and its API reference.
    "docs": ["mkdocs==1.6.1", "mkdocs-material==9.8.*", "mkdocstrings[python]==1.0.*"],
    "test": ["pytest", "pytest-timeout", "pytest-xdist", "scikit-learn", "keras-hub==0.32.*"],
}
EXTRAS["examples"] = sorted(
    {"absl-py"} | set(EXTRAS["data"] + EXTRAS["export"] + EXTRAS["plots"])
)
# Everything keras-str, its examples and benchmarks use, on the TensorFlow
# backend; the JAX and torch backends stay a choice (`.[all,jax]`).
EXTRAS["all"] = sorted(
    {
        requirement
        for name in ("export", "tfmot", "data", "plots", "tensorboard", "examples")
        for requirement in EXTRAS[name]
    }
)

setup(
    name="keras-str",
    version=VERSION,
    description=(
        "Learnable sparsity (Soft Threshold Reparameterization, ST-3) for "
        "Keras 3, exported as sparse TensorFlow Lite models."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_str", "keras_str.*", "keras_str_cli"]),
    python_requires=">=3.10",
    # Training (sparsify, fit, strip, reports) needs only Keras and numpy, on
    # any Keras backend; everything TensorFlow-shaped is an extra.
    install_requires=[
        # The oldest Keras `make test` runs on; private Keras modules keras-str
        # imports (commented where imported) may move in a major version.
        "keras>=3.15,<4",
        "numpy",
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "keras-str-export = keras_str_cli.export_tflite:run",
            "keras-str-inspect = keras_str_cli.inspect_tflite:run",
            "keras-str-benchmark = keras_str_cli.benchmark_tflite:run",
        ],
    },
)
