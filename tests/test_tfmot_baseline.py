import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.tensorflow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import os
    import numpy as np
    import keras
    import keras_str
    from examples.models import lenet_300_100
    from examples.tfmot_baseline import kernel_sparsity, train_gmp_tfmot

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(512, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=(512,))
    stripped, history = train_gmp_tfmot(
        lenet_300_100, x, y, target_sparsity=0.9, epochs=2, batch_size=64)
    print("tfmot sparsity", kernel_sparsity(stripped))
    assert abs(kernel_sparsity(stripped) - 0.9) < 0.01
    assert type(stripped).__module__.startswith("tf_keras")

    # The user's Keras 3 world is untouched.
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    import tensorflow as tf
    assert tf.keras.__name__.startswith("keras."), tf.keras.__name__
    model = keras_str.sparsify(lenet_300_100(), weight_decay=1e-3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x[:64], y[:64], verbose=0)
    print("keras 3 ok", keras.__version__)
    """
)


def test_tfmot_baseline_prunes_and_does_not_leak_legacy_keras():
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "keras 3 ok" in result.stdout


def test_bad_target_sparsity():
    from examples.tfmot_baseline import train_gmp_tfmot
    from examples.models import lenet_300_100

    with pytest.raises(ValueError, match="target_sparsity=1.5"):
        train_gmp_tfmot(lenet_300_100, None, None, target_sparsity=1.5, epochs=1)
