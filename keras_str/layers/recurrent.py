"""`SimpleRNN`, `GRU` and `LSTM` with sparse input and recurrent kernels.

A recurrent cell holds two kernels that its `call()` reads at every time
step. Each becomes a `KernelWeight` sublayer (a layer that only owns one
kernel variable), so the sparsity methods, the registry, weight decay, the
report and `strip` treat it like any other sparse kernel, with its own
threshold and step counter. The recurrent layer advances the methods once
per call and thresholds each kernel once per call, before the time loop,
not at every step.
"""

import keras

from keras_str.core.kernel_specs import SparseBlockSpec
from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_block
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.base import SparseKernelLayer
from keras_str.layers.base import assign_named
from keras_str.layers.base import _serialize_shared
from keras_str.layers.base import pop_method

# The cell attributes holding the kernels, in the order cells build them.
CELL_KERNELS = ("kernel", "recurrent_kernel")
# Where each kernel's regularizer lives on a Keras cell.
_REGULARIZERS = {"kernel": "kernel_regularizer", "recurrent_kernel": "recurrent_regularizer"}


@keras.saving.register_keras_serializable(package="keras_str")
class KernelWeight(keras.layers.Layer):
    """A layer that owns one kernel variable for another layer to compute with.

    Recurrent cells use their kernels inside a time loop; keeping each
    kernel in a layer of its own gives it its own sparsity method state.
    `kernel` is the variable (the effective kernel in the sparse subclass).

    Args:
        shape: The kernel's shape.
        kernel_initializer: Initializer of the kernel.
        kernel_regularizer: Optional regularizer of the kernel.
        kernel_constraint: Optional constraint on the kernel.
        **kwargs: Base layer arguments (`name`, `dtype`).

    Example:

    >>> weight = keras_str.layers.KernelWeight((8, 4), "glorot_uniform")
    >>> weight.build()
    >>> weight.kernel.shape
    (8, 4)
    """

    def __init__(
        self,
        shape,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        shape = tuple(shape)
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(
                "Invalid value for argument `shape`. Expected a tuple of "
                f"positive integers. Received: shape={shape!r}"
            )
        self.shape = shape
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        # Uses of each weight per example (time steps), for the report's MACs.
        self.uses_per_example = None

    def build(self, input_shape=None):
        self._kernel = self.add_weight(
            name="kernel",
            shape=self.shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.built = True

    @property
    def kernel(self):
        return self._kernel

    def call(self, inputs=None):
        return self.kernel

    def get_config(self):
        return {
            **super().get_config(),
            "shape": self.shape,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
        }


@keras.saving.register_keras_serializable(package="keras_str")
class STRKernelWeight(SparseKernelLayer, KernelWeight):
    """A `KernelWeight` whose kernel is soft-thresholded (one cell kernel).

    Args:
        shape: The kernel's shape.
        kernel_initializer: Initializer of the kernel.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`.
        **kwargs: Every other argument of `KernelWeight`.

    Example:

    >>> weight = keras_str.layers.STRKernelWeight((8, 4), "glorot_uniform")
    >>> weight.build()
    >>> weight.kernel.shape
    (8, 4)
    """

    def call(self, inputs=None, training=None):
        if training:
            self.method.advance(self)
        return self.kernel


class SparseCell:
    """Mixin for a Keras RNN cell whose two kernels are `STRKernelWeight` layers.

    The parent's `build()` asks for its `kernel` and `recurrent_kernel`
    weights; each becomes a sparse sublayer (`kernel_layer`,
    `recurrent_kernel_layer`) with the regularizer, initializer and
    constraint the cell was given. The `kernel` / `recurrent_kernel`
    attributes the parent's `call()` reads are the effective kernels,
    computed once per sequence by `SparseRecurrentLayer`.
    """

    def __init__(self, *args, method=None, kernel_name_prefix=None, **kwargs):
        self._kernels_in_use = {}
        self._kernel_layers = {}
        super().__init__(*args, **kwargs)
        self.method = method
        self.kernel_name_prefix = kernel_name_prefix or self.name

    def add_weight(self, *args, name=None, **kwargs):
        if name not in CELL_KERNELS:
            return super().add_weight(*args, name=name, **kwargs)
        weight = STRKernelWeight(
            kwargs["shape"],
            kernel_initializer=kwargs.get("initializer"),
            kernel_regularizer=kwargs.get("regularizer"),
            kernel_constraint=kwargs.get("constraint"),
            method=self.method,
            name=f"{self.kernel_name_prefix}_{name}",
            dtype=self.dtype_policy,
        )
        weight.build(None)
        setattr(self, f"{name}_layer", weight)
        self._kernel_layers[name] = weight
        return weight

    def kernel_layers(self):
        """The sparse kernel layers, input kernel first."""
        return [self._kernel_layers[name] for name in CELL_KERNELS if name in self._kernel_layers]

    def use_kernels(self, training):
        """Advances the methods and thresholds both kernels for one sequence."""
        for weight in self.kernel_layers():
            if training:
                weight.method.advance(weight)
        for name, weight in self._kernel_layers.items():
            self._kernels_in_use[name] = weight.kernel

    def release_kernels(self):
        self._kernels_in_use.clear()

    def _effective(self, name):
        in_use = self._kernels_in_use.get(name)
        if in_use is not None:
            return in_use
        return self._kernel_layers[name].kernel

    # Cells' build() assigns the add_weight results to these attributes.
    @property
    def kernel(self):
        return self._effective("kernel")

    @kernel.setter
    def kernel(self, value):
        pass

    @property
    def recurrent_kernel(self):
        return self._effective("recurrent_kernel")

    @recurrent_kernel.setter
    def recurrent_kernel(self, value):
        pass

    # Once built, a kernel's regularizer is its layer's (which
    # `apply_weight_decay` sets); the recurrent layer's config reads these.
    @property
    def kernel_regularizer(self):
        return self._regularizer("kernel")

    @kernel_regularizer.setter
    def kernel_regularizer(self, value):
        self._initial_regularizers = {**getattr(self, "_initial_regularizers", {}), "kernel": value}

    @property
    def recurrent_regularizer(self):
        return self._regularizer("recurrent_kernel")

    @recurrent_regularizer.setter
    def recurrent_regularizer(self, value):
        self._initial_regularizers = {
            **getattr(self, "_initial_regularizers", {}),
            "recurrent_kernel": value,
        }

    def _regularizer(self, name):
        weight = self._kernel_layers.get(name)
        if weight is not None:
            return weight.kernel_regularizer
        return getattr(self, "_initial_regularizers", {}).get(name)


class SimpleRNNCell(SparseCell, keras.layers.SimpleRNNCell):
    pass


class GRUCell(SparseCell, keras.layers.GRUCell):
    pass


class LSTMCell(SparseCell, keras.layers.LSTMCell):
    pass


class SparseRecurrentLayer:
    """Mixin for `SimpleRNN` / `GRU` / `LSTM` with sparse cell kernels.

    Replaces the cell its Keras parent creates by the sparse version of the
    same config; `call()` advances the method and thresholds the kernels
    once, then runs the parent's time loop.
    """

    sparse_cell_class = None

    def __init__(self, *args, **kwargs):
        method = pop_method(kwargs)
        super().__init__(*args, **kwargs)
        self.method = method
        plain_cell = self.cell
        self._tracker.untrack(plain_cell)
        self.cell = self.sparse_cell_class(
            **{**plain_cell.get_config(), "name": f"{self.name}_cell"},
            method=self.method,
            kernel_name_prefix=self.name,
        )

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        time_steps = sequences_shape[1]
        for weight in self.cell.kernel_layers():
            weight.uses_per_example = time_steps

    def call(self, sequences, initial_state=None, mask=None, training=False):
        self.cell.use_kernels(training)
        try:
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        finally:
            self.cell.release_kernels()

    def sparse_sublayers(self):
        """The sparse kernels: the cell's input kernel, then its recurrent one."""
        return self.cell.kernel_layers()

    def set_weights(self, weights):
        """Sets `layer.weights`, or, given the plain Keras layer's weights, its kernels and bias.

        `STRLSTM(4).set_weights(lstm.get_weights())` loads a built
        `keras.layers.LSTM`'s kernel, recurrent kernel and bias (Keras's
        order); the method's state stays as `build` made it.
        """
        if self.built:
            kernels = self.cell.kernel_layers()
            own = list(self.cell._trainable_variables) + list(
                self.cell._non_trainable_variables
            )
            if len(weights) == len(kernels) + len(own) != len(self.weights):
                for layer, value in zip(kernels, weights):
                    layer.set_weights([value])
                assign_named(self, own, weights[len(kernels) :], "`weights`")
                return
        super().set_weights(weights)

    def get_config(self):
        return {**super().get_config(), "method": _serialize_shared(self.method)}


@keras.saving.register_keras_serializable(package="keras_str")
class STRSimpleRNN(SparseRecurrentLayer, keras.layers.SimpleRNN):
    """`keras.layers.SimpleRNN` whose input and recurrent kernels are soft-thresholded.

    Each kernel is a `keras_str.layers.STRKernelWeight` with its own
    threshold (`simple_rnn_kernel`, `simple_rnn_recurrent_kernel` in the report),
    both using this layer's `method`. The kernels are thresholded once per
    sequence; the time loop is the parent's. `strip` gives back a plain
    `keras.layers.SimpleRNN` whose kernels hold exact zeros.

    Args:
        units: Positive integer, dimensionality of the output space.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.SimpleRNN`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRSimpleRNN(4)
    >>> layer(np.ones((2, 5, 3))).shape
    (2, 4)
    """

    sparse_cell_class = SimpleRNNCell


@keras.saving.register_keras_serializable(package="keras_str")
class STRGRU(SparseRecurrentLayer, keras.layers.GRU):
    """`keras.layers.GRU` whose input and recurrent kernels are soft-thresholded.

    Each kernel is a `keras_str.layers.STRKernelWeight` with its own
    threshold (`gru_kernel`, `gru_recurrent_kernel` in the report),
    both using this layer's `method`. The kernels are thresholded once per
    sequence; the time loop is the parent's. `strip` gives back a plain
    `keras.layers.GRU` whose kernels hold exact zeros.

    Args:
        units: Positive integer, dimensionality of the output space.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.GRU`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRGRU(4)
    >>> layer(np.ones((2, 5, 3))).shape
    (2, 4)
    """

    sparse_cell_class = GRUCell


@keras.saving.register_keras_serializable(package="keras_str")
class STRLSTM(SparseRecurrentLayer, keras.layers.LSTM):
    """`keras.layers.LSTM` whose input and recurrent kernels are soft-thresholded.

    Each kernel is a `keras_str.layers.STRKernelWeight` with its own
    threshold (`lstm_kernel`, `lstm_recurrent_kernel` in the report),
    both using this layer's `method`. The kernels are thresholded once per
    sequence; the time loop is the parent's. `strip` gives back a plain
    `keras.layers.LSTM` whose kernels hold exact zeros.

    Args:
        units: Positive integer, dimensionality of the output space.
        method: `keras_str.STR(...)` (default: plain STR), `ST3(...)` or
            `GMP(...)`; see `keras_str.STRDense`.
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`:
            `"sigmoid"` (default), `"exp"` or a callable `g(s)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's `"layer"`, `"channel"` or
            `"weight"` thresholds.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: Every other argument of `keras.layers.LSTM`.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, the method cannot hold this layer's kernel (e.g. `n_m`
            on an input axis that is not a multiple of M), or LoRA or
            quantization is asked for (`lora_rank`, `quantization_config`, a
            quantized `dtype`): strip the model first, then quantize. Keras's
            own checks of the parent's arguments apply as well.

    Example:

    >>> layer = keras_str.STRLSTM(4)
    >>> layer(np.ones((2, 5, 3))).shape
    (2, 4)
    """

    sparse_cell_class = LSTMCell


register_sparse_layer(SparseLayerSpec(KernelWeight, STRKernelWeight))
for _keras_class, _sparse_class in (
    (keras.layers.SimpleRNN, STRSimpleRNN),
    (keras.layers.GRU, STRGRU),
    (keras.layers.LSTM, STRLSTM),
):
    register_sparse_block(
        SparseBlockSpec(
            _keras_class,
            _sparse_class,
            kernel_variables=tuple(
                (f"cell.{name}", f"cell.{name}_layer") for name in CELL_KERNELS
            ),
            other_variables=("cell.bias",),
        )
    )
