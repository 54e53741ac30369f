"""Reached sparsity of every scheduled method, on every backend and training setup.

    python -m benchmarks.in_step_matrix [--out benchmarks/results/in_step_matrix.md]

Trains the MLP of `tests/in_step_common.py` (64 optimizer steps, target 90 %
reached at step 48) with ST-3, ST-3-sigma + rescale, GMP and targeted STR,
and plain STR (which has no target; its learned sparsity is shown), in each
setup: TensorFlow, JAX and PyTorch; steps_per_execution 1 and 16; jit on and
off; MirroredStrategy on 2 logical CPUs; JAX DataParallel on 2 host devices;
mixed_float16. Each backend / distribution runs in its own process. Prints a
markdown table (reached sparsity %, and the step counter) and writes it.
"""

import json
import os
import subprocess
import sys
import textwrap

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "benchmarks/results/in_step_matrix.md", "Markdown output.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("st3", "st3_sigma_rescale", "gmp", "str_target", "str")

WORKER = """
import json, sys
setup = json.loads(sys.argv[1])
if setup.get("mirrored"):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
if setup.get("data_parallel"):
    import jax
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices()))
if setup.get("mixed"):
    keras.config.set_dtype_policy("mixed_float16")
from tests.in_step_common import *
rows = {}
if setup.get("mirrored"):
    import tensorflow as tf
    # One strategy for the whole process: several MirroredStrategy objects
    # reuse collective instance keys and abort with a shape mismatch.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for name in %r:
    if setup.get("mirrored"):
        with strategy.scope():
            model = compile_for_test(sparse_mlp(name), setup["spe"], setup["jit"])
    else:
        model = compile_for_test(sparse_mlp(name), setup["spe"], setup["jit"])
    x, y = toy_data()
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0, shuffle=False)
    steps = step_counters(model)
    rows[name] = {"sparsity": overall_sparsity(model), "steps": steps[0] if steps else None}
print(json.dumps(rows))
""" % (METHODS,)


def setups():
    for backend in ("tensorflow", "jax", "torch"):
        for spe in (1, 16):
            for jit in (False, True):
                if backend == "torch" and spe > 1:
                    continue
                yield f"{backend}, spe {spe}, jit {'on' if jit else 'off'}", backend, {
                    "spe": spe, "jit": jit}, {}
    yield "tensorflow, MirroredStrategy x2, spe 1", "tensorflow", {
        "spe": 1, "jit": False, "mirrored": True}, {}
    for spe in (1, 16):
        yield f"jax, DataParallel x2, spe {spe}, jit on", "jax", {
            "spe": spe, "jit": True, "data_parallel": True}, {
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    for backend in ("tensorflow", "jax", "torch"):
        yield f"{backend}, mixed_float16", backend, {"spe": 1, "jit": False, "mixed": True}, {}


def main(argv):
    del argv
    lines = [
        "| setup | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for label, backend, setup, env_extra in setups():
        env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND=backend,
                   TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(WORKER), json.dumps(setup)],
            capture_output=True, text=True, env=env, timeout=1800,
        )
        if out.returncode:
            cells = ["error: " + out.stderr.strip().splitlines()[-1][:80]] * len(METHODS)
        else:
            rows = json.loads(out.stdout.strip().splitlines()[-1])
            cells = []
            for name in METHODS:
                row = rows[name]
                steps = "" if row["steps"] is None else f" ({row['steps']} steps)"
                cells.append(f"{100 * row['sparsity']:.2f}%{steps}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    header = (
        "# Reached sparsity by backend and setup (`benchmarks/in_step_matrix.py`)\n\n"
        "Target 90 % for every method but plain STR (learned, no target); "
        "64 optimizer steps, schedule ends at step 48.\n\n"
    )
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(FLAGS.out, header + table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
