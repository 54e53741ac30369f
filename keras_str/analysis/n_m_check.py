"""Whether kernels hold N:M sparsity, and where they do not."""

import dataclasses

import numpy as np

from keras_str.core.arguments import check_number
from keras_str.core.host import to_numpy
from keras_str.core.kernel_specs import spec_for_layer
from keras_str.core.layer_walk import iter_layers
from keras_str.core.n_m import group_nonzeros
from keras_str.core.n_m import parse_n_m
from keras_str.layers.base import is_kernel_layer

# Group positions listed per layer that fails; the count says the rest.
_LISTED = 5


@dataclasses.dataclass
class LayerNMCheck:
    """One kernel against N:M.

    Attributes:
        name: The layer's name (`"kernel"` for a bare array).
        groups: How many groups of M the kernel has.
        failing_groups: How many of them hold more than N nonzeros.
        most_nonzeros: The most nonzeros one group holds.
        failing: Kernel indices of the first entry of up to five failing
            groups.
    """

    name: str
    groups: int
    failing_groups: int
    most_nonzeros: int
    failing: list

    @property
    def satisfied(self):
        return self.failing_groups == 0


@dataclasses.dataclass
class NMCheck:
    """What `keras_str.check_n_m` found: each kernel's groups, and the layers it could not check.

    Attributes:
        n: At most this many nonzeros...
        m: ...in every group of this many consecutive weights.
        layers: A `LayerNMCheck` per kernel checked.
        unchecked: `{layer name: why}` for kernel layers that cannot hold
            N:M (no input axis, or one that is not a multiple of M).

    Example:

    >>> result = keras_str.check_n_m(np.array([[1.0], [0.0], [2.0], [0.0]]), "2:4")
    >>> result.n, result.m, result.satisfied
    (2, 4, True)
    """

    n: int
    m: int
    layers: list
    unchecked: dict

    @property
    def satisfied(self):
        """Whether every kernel checked holds at most N nonzeros in every group of M."""
        return all(layer.satisfied for layer in self.layers)

    def __str__(self):
        lines = [f"N:M {self.n}:{self.m}: {'satisfied' if self.satisfied else 'NOT satisfied'}"]
        width = max([len(layer.name) for layer in self.layers] + [5])
        for layer in self.layers:
            if layer.satisfied:
                verdict = f"ok ({layer.groups} groups, at most {layer.most_nonzeros} nonzeros)"
            else:
                more = layer.failing_groups - len(layer.failing)
                verdict = (
                    f"{layer.failing_groups} of {layer.groups} groups hold more than "
                    f"{self.n} (up to {layer.most_nonzeros}); groups starting at "
                    + ", ".join(str(index) for index in layer.failing)
                    + (f" and {more} more" if more > 0 else "")
                )
            lines.append(f"  {layer.name:{width}s}  {verdict}")
        for name, why in self.unchecked.items():
            lines.append(f"  {name:{width}s}  not checked: {why}")
        return "\n".join(lines)


def check_n_m(model_or_kernel, n_m="2:4", axis=-2):
    """Checks that kernels hold N:M sparsity: at most N nonzeros in every M consecutive weights.

    Groups run along each kernel's input axis (a Dense kernel's rows, a
    convolution's input channels), as sparse tensor cores and tfmot's
    `sparsity_m_by_n` define them.

    Args:
        model_or_kernel: A Keras model (each kernel layer is checked: a
            sparse layer by the kernel it computes with) or one kernel array.
        n_m: The pattern, `(2, 4)` or `"2:4"` (default).
        axis: For a bare kernel, the axis groups run along (default `-2`:
            a Dense or convolution kernel's inputs).

    Returns:
        An `NMCheck`; `print()` it for a per-layer table.

    Raises:
        ValueError: If `n_m` is not an N:M pattern with 0 < N < M (`"2:4"`,
            `(2, 4)`), or `axis` is not an integer axis of the kernel.

    Example:

    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> sparse = keras_str.sparsify(
    ...     dense, method=keras_str.GMP(None, keras_str.ConstantSchedule(0), n_m="2:4"))
    >>> sparse.compile(optimizer="sgd", loss="mse")
    >>> _ = sparse.fit(np.random.rand(64, 16), np.random.rand(64, 4), batch_size=8, verbose=0)
    >>> result = keras_str.check_n_m(keras_str.strip(sparse), "2:4")
    >>> result.satisfied
    True
    """
    n, m = parse_n_m(n_m)
    if not hasattr(model_or_kernel, "layers") and not hasattr(model_or_kernel, "_layers"):
        kernel = to_numpy(model_or_kernel)
        axis = check_number("axis", axis, integer=True)
        if kernel.ndim < 2 or not -kernel.ndim <= axis < kernel.ndim or kernel.shape[axis] % m:
            raise ValueError(
                f"Expected a kernel whose axis {axis} is a multiple of M={m}. "
                f"Received: a kernel of shape {kernel.shape}, axis={axis}"
            )
        return NMCheck(n, m, [_check_kernel("kernel", kernel, n, m, axis)], {})
    layers, unchecked = [], {}
    for layer in iter_layers(model_or_kernel):
        if not is_kernel_layer(layer):
            continue
        spec = spec_for_layer(layer)
        axis = spec.input_axis(layer)
        if axis is None:
            unchecked[layer.name] = f"{type(layer).__name__} has no input axis to group"
            continue
        # A sparse layer's kernel attribute is the kernel it computes with.
        kernel = to_numpy(getattr(layer, spec.kernel_attribute))
        if kernel.shape[axis] % m:
            unchecked[layer.name] = (
                f"{kernel.shape[axis]} inputs along axis {axis}, not a multiple of {m}"
            )
        else:
            layers.append(_check_kernel(layer.name, kernel, n, m, axis))
    return NMCheck(n, m, layers, unchecked)


def _check_kernel(name, kernel, n, m, axis):
    counts = group_nonzeros(kernel, m, axis)
    failing = np.argwhere(counts > n)[:_LISTED]
    axis = axis % kernel.ndim
    starts = []
    for index in failing:
        # `counts` has the kernel's axes with `axis` moved last, in groups.
        position = list(index[:-1])
        position.insert(axis, int(index[-1]) * m)
        starts.append(tuple(int(p) for p in position))
    return LayerNMCheck(
        name=name,
        groups=int(counts.size),
        failing_groups=int(np.count_nonzero(counts > n)),
        most_nonzeros=int(counts.max()) if counts.size else 0,
        failing=starts,
    )
