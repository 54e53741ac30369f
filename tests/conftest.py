import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] == "jax":
    # The tests compile hundreds of small programs and run each a few
    # times: without its costly LLVM passes XLA's CPU backend compiles them
    # faster (measured: in_step + recurrent + low_rank on JAX 116 s -> 83 s;
    # no gain on TensorFlow, left as is there).
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    )

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # Export, LiteRT, tfmot and the TF data pipeline need TensorFlow; the
    # layers, methods, transforms and schedules run on every backend.
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(
        reason=f"needs TensorFlow; backend is {keras.backend.backend()}"
    )
    for item in items:
        if "tensorflow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.config.set_dtype_policy("float32")
    # Without the full garbage collection `clear_session` runs by default
    # (~0.3 s over the libraries' objects, on each of ~2,000 tests: about
    # 300 s of `make test`); Python's own collector still runs.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1337)
    yield
    keras.config.set_dtype_policy("float32")
