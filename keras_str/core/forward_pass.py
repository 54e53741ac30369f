"""Which forward pass is running: lets a method act once per pass, whichever layer comes first."""

# Keras has no public accessor for the current call context or stateless
# scope; both live in its global state. Used for the one question "is this
# the same forward pass as the last call?".
from keras.src.backend.common import global_state


def current_forward_pass():
    """An object that stands for the forward pass being run (or traced), or `None`.

    Keras's JAX trainer runs `model.stateless_call`, one `StatelessScope` a
    step, whose layers each open their own call context; TensorFlow's and
    PyTorch's trainers call the model, whose call context its layers share.
    Either object lives as long as the pass (one trace under `jit`).
    """
    scope = global_state.get_global_attribute("stateless_scope")
    if scope is not None:
        return scope
    return global_state.get_global_attribute("current_call_ctx")
