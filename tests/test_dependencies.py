"""keras-str's modules import one way: no import circle, function-level imports included."""

import ast
import os
import textwrap

import pytest

import keras_str

# Imports against the package's direction (core, then layers and methods,
# then transforms, training, export, tools) that still close circles. Each
# goes when its module moves; the list only shrinks: an edge that no longer
# exists fails `test_the_known_backward_imports_still_exist` until it is
# taken out.
KNOWN_BACKWARD_IMPORTS = set()


def module_name(root, path):
    relative = os.path.relpath(path, os.path.dirname(root))[: -len(".py")]
    name = relative.replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def import_graph(root):
    """`{module: {module it imports}}` over the package at `root`, every import statement counted."""
    paths = {}
    for folder, _, files in os.walk(root):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                paths[module_name(root, path)] = path
    graph = {}
    for name, path in paths.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in node.names:
                    # `from package import module` reads the module.
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in paths else base)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def circles(graph):
    """The strongly connected groups of more than one module (sorted lists)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def without(graph, edges):
    return {name: targets - {b for a, b in edges if a == name} for name, targets in graph.items()}


PACKAGE = os.path.dirname(keras_str.__file__)


def test_no_import_circle_beyond_the_known_backward_imports():
    graph = import_graph(PACKAGE)
    assert circles(without(graph, KNOWN_BACKWARD_IMPORTS)) == []


def test_core_imports_nothing_above_it():
    graph = import_graph(PACKAGE)
    above = sorted(
        (name, target)
        for name, targets in graph.items()
        if name.startswith("keras_str.core.")
        for target in targets
        if not target.startswith("keras_str.core")
    )
    assert above == []


def test_every_private_keras_import_says_why():
    unexplained = []
    for folder, _, files in os.walk(PACKAGE):
        for file in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, file)
            with open(path) as f:
                lines = f.read().splitlines()
            for number, line in enumerate(lines):
                private = line.strip().startswith(("from keras.src", "import keras.src"))
                if private and not (number and lines[number - 1].strip().startswith("#")):
                    unexplained.append(f"{os.path.relpath(path, PACKAGE)}:{number + 1}")
    assert unexplained == [], (
        "Private Keras imports need a comment above them saying why no public "
        f"route serves: {unexplained}"
    )


def test_the_known_backward_imports_still_exist():
    graph = import_graph(PACKAGE)
    gone = sorted((a, b) for a, b in KNOWN_BACKWARD_IMPORTS if b not in graph.get(a, ()))
    assert gone == [], f"Take these out of KNOWN_BACKWARD_IMPORTS: {gone}"


@pytest.fixture
def package(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()

    def write(name, text):
        (root / name).write_text(textwrap.dedent(text))

    write("__init__.py", "")
    write("low.py", "import os\n")
    return root, write


def test_a_circle_through_a_function_level_import_is_found(package):
    root, write = package
    write("core.py", "from pkg.low import os\n")
    write("layer.py", "from pkg import core\n")
    write("low.py", """
        def helper():
            from pkg.layer import core
            return core
    """)
    assert circles(import_graph(str(root))) == [["pkg.core", "pkg.layer", "pkg.low"]]


def test_relative_imports_and_packages_count(package):
    root, write = package
    (root / "sub").mkdir()
    write("sub/__init__.py", "from .leaf import value\n")
    write("sub/leaf.py", "from .. import low\nvalue = 1\n")
    write("low.py", "from pkg.sub import value\n")
    graph = import_graph(str(root))
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.low"}
    assert circles(graph) == [["pkg.low", "pkg.sub", "pkg.sub.leaf"]]
