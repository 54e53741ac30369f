"""Low-rank STR: a 2-D kernel kept as `U diag(sigma) V^T`, with a learned threshold on `sigma`.

The STR paper's low-rank variant (FastGRNN on keyword spotting and HAR):
soft-thresholding the singular values drops whole ranks, so a kernel that
keeps `r` of them is two thin matrices with `r * (in + out)` weights.
"""

import keras
import numpy as np
from keras import ops

from keras_str.core.arguments import as_number
from keras_str.core.arguments import check_finite_number
from keras_str.core.host import to_numpy
from keras_str.core.threshold_fns import get_threshold_fn
from keras_str.core.threshold_fns import serialize_threshold_fn
from keras_str.methods.base import SparsityMethod
from keras_str.methods.str import DEFAULT_THRESHOLD_INIT
from keras_str.ops import soft_threshold


@keras.saving.register_keras_serializable(package="keras_str")
class LowRankSTR(SparsityMethod):
    """Low-rank STR: `U diag(S_g(sigma, s)) V^T` with a learned threshold on `sigma`.

    A layer's 2-D kernel (`Dense`, a recurrent cell's input and recurrent
    kernels, `Embedding`, a matrix `EinsumDense`) is trained as three
    factors, `U` (in, r), `sigma` (r,) and `V` (out, r), initialised from the
    kernel by SVD, so the layer starts computing what the dense one did. The
    layer computes with `U diag(sign(sigma) * relu(|sigma| - g(s))) V^T`:
    every singular value at or below the threshold `g(s)` is an exact zero,
    i.e. one rank less. As in STR, `s` is trained with the factors and
    weight decay on both (`keras_str.apply_weight_decay`, which decays `U`,
    `sigma` and `V` in the kernel's place) raises it until the loss pushes
    back, so each kernel learns its own rank.

    The raw kernel only seeds the factors: it is not trainable and gets no
    weight decay. `keras_str.sparsify` refactorises the trained dense kernel
    it copies in; after setting a built layer's `raw_kernel` yourself, call
    `method.kernel_assigned(layer)`.

    `keras_str.strip` turns a low-rank `STRDense` that keeps rank `r` into
    two thin `Dense` layers (`r` units without bias, then the layer's own
    units, activation and bias, in a `keras.Sequential` named like the
    layer) when `r * (in + out) < in * out`, else into one `Dense` with the
    product kernel. A recurrent cell's kernel is one matrix of the cell, so
    there `strip` writes the product (`rank(layer)` says what a factored
    cell would keep).

    Args:
        max_rank: Optional cap on the rank kept per kernel: a positive
            integer, or a dict from layer name to integer (other layers
            keep their full rank). A kernel is factorised with
            `min(in, out, max_rank)` singular values; below the full rank
            the layer starts from the best approximation of that rank.
        threshold_fn: `"exp"` (default: the STR paper's choice for
            structured sparsity, filters and low rank; unlike the sigmoid it
            is not capped at 1), `"sigmoid"` or a callable `g(s)` written with
            `keras.ops`.
        threshold_init: Initial value of the raw threshold parameter `s`.
            Defaults to `-10.0` (`g(s) ~ 4.5e-5`: the layer starts at full
            rank).
        threshold_regularizer: Regularizer for `s`; STR needs the same decay
            on `s` as on the factors (`keras_str.apply_weight_decay` sets
            it).

    Raises:
        ValueError: If `max_rank` is not a positive integer, a dict of them or
            None, or `threshold_fn` is unknown. A kernel that is not 2-D (a
            convolution's) is refused, naming the layer, when the model is
            sparsified.

    Example:

    >>> layer = keras_str.STRDense(8, method=keras_str.LowRankSTR(threshold_init=-3.0))
    >>> gru = keras_str.STRGRU(8, method=keras_str.LowRankSTR(max_rank=4))
    >>> dense = keras.Sequential([keras.Input((16,)),
    ...     keras.layers.Dense(32, name="hidden"), keras.layers.Dense(4, name="logits")])
    >>> sparse = keras_str.sparsify(dense, method=keras_str.LowRankSTR(), weight_decay=1e-4)
    """

    learns_threshold = True

    def __init__(
        self,
        max_rank=None,
        threshold_fn="exp",
        threshold_init=DEFAULT_THRESHOLD_INIT,
        threshold_regularizer=None,
    ):
        super().__init__()
        self.max_rank = _check_max_rank(max_rank)
        self._threshold_fn = get_threshold_fn(threshold_fn)
        self.threshold_fn = (
            self._threshold_fn if isinstance(threshold_fn, dict) else threshold_fn
        )
        self.threshold_init = check_finite_number("threshold_init", threshold_init)
        self.threshold_regularizer = keras.regularizers.get(threshold_regularizer)

    def full_rank(self, layer):
        """The number of singular values `layer`'s kernel is factorised with."""
        fan_in, fan_out = self._kernel_shape(layer)
        cap = self.max_rank
        if isinstance(cap, dict):
            cap = cap.get(layer.name)
        return min(fan_in, fan_out, cap or fan_in)

    def _kernel_shape(self, layer):
        shape = tuple(layer.raw_kernel.shape)
        if len(shape) != 2:
            raise ValueError(
                "LowRankSTR factorises 2-D kernels (Dense, recurrent cells, "
                f"Embedding); layer {layer.name!r} ({type(layer).__name__}) "
                f"has a kernel of shape {shape}. Keep it dense (`keep_dense=` "
                "in `keras_str.sparsify`) or give it another method. "
                f"Received: layer={layer.name!r} with kernel shape {shape}"
            )
        return shape

    def build(self, layer):
        fan_in, fan_out = self._kernel_shape(layer)
        rank = self.full_rank(layer)
        kernel = layer.raw_kernel
        _make_non_trainable(layer, kernel)
        # The factors take the kernel's weight decay in its place.
        regularizer = getattr(layer, layer.kernel_spec.regularizer_attribute, None)
        svd = _TruncatedSVD(kernel, rank)
        state = {}
        for name, shape in (("u", (fan_in, rank)), ("sigma", (rank,)), ("v", (fan_out, rank))):
            state[name] = layer.add_weight(
                name=name,
                shape=shape,
                initializer=svd.initializer(name),
                regularizer=regularizer,
                dtype=layer.variable_dtype,
                autocast=False,
            )
        state["threshold"] = layer.add_weight(
            name="threshold",
            shape=(),
            initializer=keras.initializers.Constant(self.threshold_init),
            regularizer=self.threshold_regularizer,
            dtype=layer.variable_dtype,
            autocast=False,
        )
        return state

    def kernel_variables(self, layer):
        state = layer.sparsity_state
        return [state["u"], state["sigma"], state["v"]]

    def kernel_assigned(self, layer):
        factors = _TruncatedSVD(layer.raw_kernel, self.full_rank(layer))
        for name in ("u", "sigma", "v"):
            variable = layer.sparsity_state[name]
            variable.assign(ops.cast(factors.part(name), variable.dtype))

    def threshold(self, layer):
        s = ops.convert_to_tensor(layer.sparsity_state["threshold"])
        return self._threshold_fn(s)

    def singular_values(self, layer):
        """The thresholded `sigma` the layer computes with (a tensor); zeros are dropped ranks."""
        sigma = ops.convert_to_tensor(layer.sparsity_state["sigma"])
        return soft_threshold(sigma, self.threshold(layer))

    def effective_kernel(self, layer, kernel):
        # The raw `kernel` only seeded the factors.
        state = layer.sparsity_state
        u = ops.convert_to_tensor(state["u"])
        v = ops.convert_to_tensor(state["v"])
        return ops.matmul(u * self.singular_values(layer), ops.transpose(v))

    def rank(self, layer):
        """The rank `layer`'s kernel keeps: its nonzero thresholded singular values (host side)."""
        return int(np.count_nonzero(to_numpy(self.singular_values(layer))))

    def factors(self, layer):
        sigma = to_numpy(self.singular_values(layer))
        kept = np.flatnonzero(sigma)
        u = to_numpy(layer.sparsity_state["u"])[:, kept]
        v = to_numpy(layer.sparsity_state["v"])[:, kept]
        # sqrt(|sigma|) on both sides keeps the two matrices on one scale
        # (what int8 quantization of the thin layers wants).
        root = np.sqrt(np.abs(sigma[kept]))
        return u * (np.sign(sigma[kept]) * root), (v * root).T

    def get_config(self):
        return {
            "max_rank": self.max_rank,
            "threshold_fn": serialize_threshold_fn(self.threshold_fn),
            "threshold_init": self.threshold_init,
            "threshold_regularizer": keras.regularizers.serialize(
                self.threshold_regularizer
            ),
        }


def _positive_int(value):
    number = as_number(value)
    if number is None or not float(number).is_integer() or number < 1:
        return None
    return int(number)


def _check_max_rank(max_rank):
    if max_rank is None:
        return None
    if _positive_int(max_rank) is not None:
        return _positive_int(max_rank)
    if isinstance(max_rank, dict) and all(
        isinstance(name, str) and _positive_int(rank) is not None
        for name, rank in max_rank.items()
    ):
        return {name: _positive_int(rank) for name, rank in max_rank.items()}
    raise ValueError(
        "Invalid value for argument `max_rank`. Expected a positive integer, "
        "a dict from layer name to positive integer, or None. "
        f"Received: max_rank={max_rank!r}"
    )


def _make_non_trainable(layer, variable):
    """Makes `variable` non-trainable for good.

    Setting `layer.trainable = True` (unfreezing) makes trainable again
    every variable in the layer's trainable list, so the variable moves to
    the non-trainable one. Identity, not `==` (elementwise on variables).
    """
    variable.trainable = False
    trainable = layer._trainable_variables
    for index, known in enumerate(trainable):
        if known is variable:
            del trainable[index]
            layer._non_trainable_variables.append(variable)
            return


class _TruncatedSVD:
    """The `rank` leading singular triplets of a kernel variable, computed once, when first asked.

    Used as the factors' initializers: under a stateless scope (JAX) Keras
    defers variable initialization, and then the kernel has a value only
    when the deferred initializers run, in creation order (kernel first).
    """

    def __init__(self, kernel, rank):
        self.kernel = kernel
        self.rank = rank
        self._parts = None

    def part(self, name):
        if self._parts is None:
            kernel = ops.convert_to_tensor(self.kernel)
            u, sigma, vh = ops.svd(kernel, full_matrices=False)
            self._parts = {
                "u": u[:, : self.rank],
                "sigma": sigma[: self.rank],
                "v": ops.transpose(vh[: self.rank]),
            }
        return self._parts[name]

    def initializer(self, name):
        def initialize(shape, dtype=None):
            return ops.cast(self.part(name), dtype)

        return initialize
