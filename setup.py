import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "keras_str" / "__init__.py").read_text()
).group(1)

setup(
    name="keras-str",
    version=VERSION,
    description=(
        "Learnable sparsity (Soft Threshold Reparameterization, ST-3) for "
        "Keras 3, exported as sparse TensorFlow Lite models."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_str", "keras_str.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "tf-keras==2.21.*",
        "tensorflow-model-optimization==0.8.1",
        "tensorflow-datasets",
        "tensorboard",
        "importlib_resources",
        "absl-py",
        "ai-edge-litert",
        "numpy",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "scikit-learn"],
    },
)
