"""Every public name's docstring: a summary, its arguments, what it returns
and raises, and an example that runs.

Walks `keras_str.__all__` and `keras_str.ops.__all__`. The examples are
run, not compared: their output depends on the backend's tensor types, but a
renamed argument or a removed name fails here, so the API reference cannot
rot. mkdocstrings renders the same docstrings (`docs/api/`).
"""

import dataclasses
import doctest
import inspect
import re

import keras
import numpy as np
import pytest

import keras_str

PUBLIC = {
    **{name: getattr(keras_str, name) for name in keras_str.__all__ if name != "ops"},
    **{f"ops.{name}": getattr(keras_str.ops, name) for name in keras_str.ops.__all__},
}
# Their examples export or run a .tflite: TensorFlow and LiteRT.
NEEDS_TENSORFLOW = {"export_tflite", "ExportReport", "predict_tflite", "time_tflite"}
# Tensor math without argument checks of its own: the backend's shape and
# dtype errors are what they raise.
PURE_OPS = {"ops.soft_threshold", "ops.group_soft_threshold"}
# Constructed by keras-str and handed back, never by users: attributes, no Args.
RESULTS = {"ExportReport", "LayerSparsity", "NMCheck", "SparsityReport"}
SECTION = re.compile(r"^(Args|Arguments|Attributes|Returns|Raises|Example|Examples):\s*$", re.M)


def sections(doc):
    """Maps each Google-style section name to its text."""
    marks = list(SECTION.finditer(doc))
    return {
        mark.group(1): doc[mark.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(doc))]
        for i, mark in enumerate(marks)
    }


def named_parameters(obj):
    signature = inspect.signature(obj)
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name != "self"
    ]


def documented(text, name):
    return re.search(rf"^\s*\**{re.escape(name)}( \(.*\))?:", text, re.M) is not None


def test_public_api_is_listed():
    public = {name for name in dir(keras_str) if not name.startswith("_")}
    submodules = {"analysis", "core", "export", "layers", "methods", "saving", "training", "transforms"}
    assert public - submodules == set(keras_str.__all__)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_sections(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj)
    assert doc, f"{name} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), f"{name}: summary line {summary!r}"
    found = sections(doc)
    assert any(key in found for key in ("Example", "Examples")), f"{name}: no Example"
    if name.split(".")[-1] in RESULTS:
        assert dataclasses.is_dataclass(obj)
        for field in dataclasses.fields(obj):
            assert documented(found.get("Attributes", ""), field.name), f"{name}.{field.name}"
        return
    parameters = named_parameters(obj)
    if parameters:
        for parameter in parameters:
            assert documented(found.get("Args", ""), parameter), f"{name}: Args lacks {parameter}"
        assert "Raises" in found or name in PURE_OPS, f"{name}: no Raises"
    if not inspect.isclass(obj):
        assert "Returns" in found, f"{name}: no Returns"


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_docstring_example_runs(name, tmp_path, monkeypatch):
    if name in NEEDS_TENSORFLOW and keras.backend.backend() != "tensorflow":
        pytest.skip("the example runs LiteRT")
    examples = doctest.DocTestParser().get_examples(inspect.getdoc(PUBLIC[name]))
    assert examples, f"{name}: no >>> example"
    monkeypatch.chdir(tmp_path)
    source = "".join(example.source for example in examples)
    exec(compile(source, f"<{name} example>", "exec"), {"np": np, "keras": keras, "keras_str": keras_str})
