"""What every sparse layer adds to its Keras parent: a method that computes its kernel."""

import keras
from keras import ops

# Keras keeps its object-sharing scope (active while a model is saved or
# loaded) in its global state, with no public accessor; `_serialize_shared`
# must know whether it is active.
from keras.src.backend.common import global_state

from keras_str.core.kernel_specs import registered_specs
from keras_str.core.kernel_specs import spec_for_sparse_class
from keras_str.methods import STR
from keras_str.methods import get_method

# Layer arguments that configure STR; a shortcut for `method=STR(...)`.
STR_SHORTCUT_KEYS = (
    "threshold_fn",
    "threshold_init",
    "threshold_granularity",
    "threshold_regularizer",
)
# The arguments a sparse layer adds to its parent; `strip` drops exactly these.
SPARSE_CONFIG_KEYS = STR_SHORTCUT_KEYS + ("method",)


def _resolve_method(method, shortcuts):
    given = {k: v for k, v in shortcuts.items() if v is not None}
    if not given:
        return get_method(method)
    if method is None or method == "str":
        return STR(**given)
    raise ValueError(
        f"Pass STR's settings ({', '.join(sorted(given))}) either to the layer "
        "(for plain STR) or to `keras_str.STR(...)` as its `method`, not "
        f"both. Received: method={method!r}, "
        + ", ".join(f"{k}={v!r}" for k, v in given.items())
    )


def pop_method(kwargs):
    """Removes `method` and STR's shortcut arguments from `kwargs`; returns the method.

    For layers that hold sparse sublayers (`STRMultiHeadAttention`,
    `STRLSTM`) and take the same sparsity arguments as `SparseKernelLayer`.
    """
    shortcuts = {key: kwargs.pop(key, None) for key in STR_SHORTCUT_KEYS}
    return _resolve_method(kwargs.pop("method", None), shortcuts)


class SparseKernelLayer:
    """Mixin that turns a Keras kernel layer into a sparse-trainable layer.

    The layer keeps its raw kernel `W` (`raw_kernel`) and asks its sparsity
    method (`keras_str.STR` by default, or `ST3`, `GMP`) for the kernel it
    computes with; the parent's `call()` reads it through the `kernel`
    property, computed in the variable dtype (float32 under
    `mixed_float16`) and then cast to the compute dtype. The method's state
    lives in the layer's variables (`sparsity_state`, plus the
    `sparsity_step` and `finite_steps` counters) and is updated inside
    `call(..., training=True)`, like `BatchNormalization`'s statistics, so
    it advances inside the compiled train step on every backend.

    Subclasses list the mixin first: `class STRDense(SparseKernelLayer,
    keras.layers.Dense)`, and the module defining the subclass registers
    the pair (`keras_str.layers.register_sparse_layer`).

    Args:
        *args: The Keras parent's positional arguments.
        method: The sparsity method (`keras_str.STR()` when not given).
        threshold_fn: Shortcut for `method=keras_str.STR(threshold_fn=...)`.
        threshold_init: Shortcut for STR's initial raw threshold `s`.
        threshold_granularity: Shortcut for STR's granularity.
        threshold_regularizer: Shortcut for STR's regularizer of `s`.
        **kwargs: The Keras parent's other arguments.

    Raises:
        ValueError: If `method` is given together with STR's shortcut
            arguments, or LoRA or quantization is asked for (`lora_rank`,
            `quantization_config`, a quantized `dtype`): strip first.

    Example:

    >>> class MyDense(keras.layers.Dense):  # a layer of one's own
    ...     pass
    >>> class SparseMyDense(keras_str.SparseKernelLayer, MyDense):  # mixin first
    ...     pass
    >>> layer = SparseMyDense(4, method=keras_str.STR(threshold_init=-2.0))
    >>> layer(np.ones((2, 8))).shape
    (2, 4)
    >>> isinstance(keras_str.STRDense(4), keras_str.SparseKernelLayer)
    True
    """

    def __init__(
        self,
        *args,
        method=None,
        threshold_fn=None,
        threshold_init=None,
        threshold_granularity=None,
        threshold_regularizer=None,
        **kwargs,
    ):
        if kwargs.get("lora_rank"):
            raise ValueError(
                "LoRA is not supported on sparse layers: the low-rank update "
                "would bypass the threshold. Received: "
                f"lora_rank={kwargs['lora_rank']}"
            )
        if kwargs.get("quantization_config") is not None:
            raise ValueError(
                "Sparse layers cannot be quantized while training; strip the "
                "model first (`keras_str.strip`). Received: "
                f"quantization_config={kwargs['quantization_config']}"
            )
        super().__init__(*args, **kwargs)
        if self.dtype_policy.quantization_mode is not None:
            raise ValueError(
                "Sparse layers cannot be quantized while training; strip the "
                "model first (`keras_str.strip`) and quantize the plain "
                f"layers. Received: dtype={self.dtype_policy.name!r}"
            )
        self.kernel_spec = spec_for_sparse_class(type(self))
        self.method = _resolve_method(
            method,
            {
                "threshold_fn": threshold_fn,
                "threshold_init": threshold_init,
                "threshold_granularity": threshold_granularity,
                "threshold_regularizer": threshold_regularizer,
            },
        )
        self.sparsity_state = None

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") == spec_for_sparse_class(type(self)).kernel_attribute:
            # The threshold comparison must see the full-precision kernel,
            # even when the layer computes in float16.
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    def build(self, input_shape=None):
        # `None` as in the parents that need no shape (`Embedding`).
        super().build(input_shape)
        # The variables the plain parent layer has, in the order it saves
        # them: a plain layer's weights load into these (`set_weights`,
        # `load_own_variables`). Names, not variables: no second tracking.
        object.__setattr__(self, "_plain_variable_names", tuple(
            v.name for v in list(self._trainable_variables) + list(self._non_trainable_variables)
        ))
        self.sparsity_state = self.method.build(self)
        # Training steps this layer has run (a scheduled method's clock),
        # and how many of them began with its trained values finite (fewer:
        # they went NaN or inf); both counted in-step by `method.advance`.
        # int32: JAX stores int64 as int32 anyway; 2^31 steps suffice.
        self.sparsity_step = self._add_step_counter("sparsity_step", "zeros")
        self.finite_steps = self._add_step_counter("finite_steps", "zeros")
        self.method.attach(self)

    def _add_step_counter(self, name, initializer):
        return self.add_weight(
            name=name,
            shape=(),
            initializer=initializer,
            dtype="int32",
            trainable=False,
            autocast=False,
            aggregation="only_first_replica",
        )

    def call(self, inputs, training=None):
        if training:
            self.method.advance(self)
        return super().call(inputs)

    @property
    def raw_kernel(self):
        """The trained kernel variable `W`, before the method is applied."""
        return getattr(self, "_" + self.kernel_spec.kernel_attribute)

    @property
    def threshold_param(self):
        """The method's `"threshold"` variable (STR's `s`, ST-3's `t`)."""
        self._check_built("threshold_param")
        return self.sparsity_state.get("threshold")

    @property
    def threshold(self):
        """The current threshold (`g(s)` for STR), or `None` (GMP)."""
        self._check_built("threshold")
        return self.method.threshold(self)

    def thresholded_kernel(self):
        """Returns the effective kernel in the variable dtype.

        For STR, `sign(W) * relu(|W| - g(s))`. This is what the layer
        computes with (before the cast to the compute dtype) and what
        `keras_str.strip` writes into the plain layer.
        """
        self._check_built("thresholded_kernel")
        return self.method.effective_kernel(
            self, ops.convert_to_tensor(self.raw_kernel)
        )

    def _check_built(self, what):
        if not self.built:
            raise AttributeError(
                f"You must build the layer before accessing `{what}`."
            )

    @property
    def kernel(self):
        """The effective kernel, cast to the layer's compute dtype.

        Computed from `raw_kernel` at each access, so it is a tensor, not a
        variable: assign weights with `layer.raw_kernel.assign(...)` (or
        `set_weights`); the kernel's constraint is
        `layer.raw_kernel.constraint`.
        """
        return ops.cast(self.thresholded_kernel(), self.compute_dtype)

    @kernel.setter
    def kernel(self, value):
        # Parents whose build() assigns `self.kernel` (DepthwiseConv) store
        # the raw kernel where the effective-kernel property expects it.
        self._kernel = value

    @property
    def bias(self):
        """The bias the layer computes with: 0 in the output channels the method removes."""
        bias = getattr(self, "_bias", None)
        if bias is None or getattr(self, "sparsity_state", None) is None:
            return bias
        live = self.method.live_channels(self, ops.convert_to_tensor(self.raw_kernel))
        if live is None or tuple(live.shape) != tuple(bias.shape):
            return bias
        bias = ops.convert_to_tensor(bias)
        return ops.where(live, bias, ops.zeros_like(bias))

    @bias.setter
    def bias(self, value):
        self._bias = value

    def enable_lora(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.__class__.__name__} does not support LoRA: the low-rank "
            "update would bypass the threshold."
        )

    def quantize(self, mode=None, *args, **kwargs):
        # A ValueError, not NotImplementedError: `Model.quantize` turns the
        # latter into a warning and leaves the sparse layers in float.
        raise ValueError(
            f"Layer {self.name!r} ({self.__class__.__name__}) cannot be "
            "quantized while it trains sparse; call `keras_str.strip(model)` "
            f"first and quantize the plain model. Received: mode={mode!r}"
        )

    # Keras parents save `self.kernel` (here the effective kernel) and skip
    # extra variables. Every variable is saved under its own name, so W and
    # the method's state round-trip exactly whatever their order.
    def save_own_variables(self, store):
        for variable in self._own_variables():
            store[variable.name] = variable

    def load_own_variables(self, store):
        variables = self._own_variables()
        plain = self.plain_variables()
        keys = set(store.keys())
        if plain and len(plain) < len(variables) and keys == {str(i) for i in range(len(plain))}:
            # Saved by the plain layer this one replaces (a dense model's
            # `.keras` or `.weights.h5`).
            self._assign_plain([store[str(i)] for i in range(len(plain))], "the file")
            return
        # Files from keras-str versions that counted no steps for plain STR
        # and no faults lack these; they keep their initial values (and a
        # file's `nonfinite_step`, the counter before `finite_steps`, is
        # left unread).
        counters = ("sparsity_step", "finite_steps")
        if all(v.name in store for v in variables if v.name not in counters):
            for variable in variables:
                if variable.name in store:
                    variable.assign(store[variable.name])
            return
        keras.layers.Layer.load_own_variables(self, store)

    def set_weights(self, weights):
        """Sets `layer.weights`, or, given as many arrays as the plain layer has, its variables.

        `STRDense(4).set_weights(dense.get_weights())` loads a `Dense`
        layer's kernel and bias; the method's state stays as `build` made it
        (as `keras_str.sparsify` leaves it).
        """
        plain = self.plain_variables()
        if plain and len(weights) == len(plain) != len(self.weights):
            self._assign_plain(weights, "`weights`")
            return
        super().set_weights(weights)

    def plain_variables(self):
        """The variables the plain Keras layer has (kernel, bias, ...), in its order; not the method's."""
        names = getattr(self, "_plain_variable_names", ())
        by_name = {v.name: v for v in self._own_variables()}
        return [by_name[name] for name in names if name in by_name]

    def _assign_plain(self, values, source):
        assign_named(self, self.plain_variables(), values, source)
        # State derived from the kernel (low-rank STR's factors) follows it.
        self.method.kernel_assigned(self)

    def _own_variables(self):
        # Not a sparse sublayer's (an untied output projection): it saves
        # its own, and its names would collide with these.
        return list(self._trainable_variables) + list(self._non_trainable_variables)

    def get_config(self):
        base_config = super().get_config()
        config = {"method": _serialize_shared(self.method)}
        return {**base_config, **config}


def assign_named(layer, variables, values, source):
    """Assigns `values` to `variables` of `layer`; a value of the wrong shape is named with both."""
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"Layer {layer.name!r}: {source} holds a {tuple(value.shape)} "
                f"value for its {variable.name!r} of shape "
                f"{tuple(variable.shape)}."
            )
        variable.assign(value)


def is_sparse_layer(layer):
    """Whether `layer` is a sparse-trainable layer (a `SparseKernelLayer`)."""
    return isinstance(layer, SparseKernelLayer)


def is_kernel_layer(layer):
    """Whether `layer` is a registered Keras kernel layer, plain or sparse.

    A plain layer of a class converted only on request (a
    `BatchNormalization`) is not one.
    """
    return is_sparse_layer(layer) or any(
        isinstance(layer, spec.keras_class)
        for spec in registered_specs()
        if not spec.on_request
    )


def _serialize_shared(method):
    """Serializes `method` so that the layers sharing it share it again on load.

    Keras marks objects seen twice while saving a model with a
    `shared_object_id`, but it copies a layer's config after the first
    sighting, so the first layer's copy would lose the mark. Inside a save
    or load (Keras's object-sharing scope is active) every sighting is
    marked here; outside one (`get_config()`, `clone_model`) none is, so
    clones get their own method objects. During a load, a method that was
    itself loaded keeps its id from the file: `Bidirectional` rebuilds its
    forward layer from the loaded layer's config, and must find the same
    method again.
    """
    config = keras.saving.serialize_keras_object(method)
    if global_state.get_global_attribute("shared_objects/id_to_config_map") is not None:
        loaded = global_state.get_global_attribute("shared_objects/id_to_obj_map") or {}
        file_ids = [obj_id for obj_id, obj in loaded.items() if obj is method]
        config["shared_object_id"] = file_ids[0] if file_ids else id(method)
    return config
