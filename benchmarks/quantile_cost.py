"""Cost of one global k-th smallest (`keras_str.core.quantile`) per backend.

    python -m benchmarks.quantile_cost [--backends tensorflow,jax,torch] [--rounds 7]
        [--sizes 10k,122k,266k,1.3M,4.2M,25.5M] [--out_dir benchmarks/results]

Each backend runs in its own process: TF inside `tf.function(jit_compile=True)`
(XLA, as in a `jit_compile=True` train step), JAX inside `jax.jit`, PyTorch
eagerly (Keras's default for torch). Every algorithm (`sort`, `bisect`,
`radix`: two 16-bit passes, `radix_3x11`: three passes of 11/11/10 bits)
picks the 90 % quantile (k = round(0.9 n)) of the kernels of a real model's
layers (magnitudes of Glorot-scaled normals, one tensor per layer), as
ST-3 does every step. A `noop` function with the same inputs (one gather)
measures the call and synchronisation overhead. Variants alternate within
each round on the same inputs; the table gives per-variant medians over the
rounds, each exact result checked against `np.partition`. `sample` (the
selection among 16,384 fixed random entries, `"auto"` above 131,072) is
reported with the sparsity it reaches: the share of entries at or below
its result, minus 0.9, in points.
"""

import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks.harness import emit  # noqa: E402
from benchmarks.harness import run_worker  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "backends", ["tensorflow", "jax", "torch", "tensorflow_graph"],
    "Runtimes: tensorflow (XLA), jax (jit), torch (eager), tensorflow_graph "
    "(tf.function without XLA, as fit(jit_compile=False) runs).",
)
flags.DEFINE_list(
    "sizes", ["10k", "122k", "266k", "1.3M", "4.2M", "25.5M"], "Model sizes (see SIZES)."
)
flags.DEFINE_list(
    "methods", ["noop", "sort", "bisect", "radix", "radix_3x11", "sample"],
    "Algorithms to time."
)
flags.DEFINE_integer("rounds", 7, "Alternating rounds (median over rounds).")
flags.DEFINE_float(
    "max_seconds", 20.0,
    "Skip a variant at bigger sizes once one call took longer than this.",
)
flags.DEFINE_integer(
    "torch_threads", 1,
    "torch.set_num_threads for the torch worker (0: torch's default). On 2 shared "
    "cores, torch's 2-thread ops wait ~10 ms on each other under load.",
)
flags.DEFINE_string("out_dir", "benchmarks/results", "Where the table goes.")
flags.DEFINE_string("worker", None, "Internal: run one backend's timings.")


def _mobilenet_v1(alpha, classes=1000):
    shapes = [(3, 3, 3, int(32 * alpha))]
    channels = int(32 * alpha)
    for filters in (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024):
        shapes.append((3, 3, channels, 1))
        shapes.append((1, 1, channels, int(filters * alpha)))
        channels = int(filters * alpha)
    return shapes + [(channels, classes)]


def _resnet50():
    shapes = [(7, 7, 3, 64)]
    channels = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            if block == 0:
                shapes.append((1, 1, channels, 4 * width))  # projection shortcut
            shapes += [
                (1, 1, channels, width),
                (3, 3, width, width),
                (1, 1, width, 4 * width),
            ]
            channels = 4 * width
    return shapes + [(2048, 1000)]


# Kernel shapes of real models (one tensor per layer, as a method sees them).
SIZES = {
    "1.4k": [(3, 3, 1, 8), (3, 3, 8, 8), (72, 10)],
    "10k": [(3, 3, 1, 16), (3, 3, 16, 32), (160, 32), (32, 10)],
    "122k": [(3, 3, 1, 32), (3, 3, 32, 64), (1600, 64), (64, 10)],  # small CNN
    "266k": [(784, 300), (300, 100), (100, 10)],  # LeNet-300-100
    "1.3M": _mobilenet_v1(0.5),  # MobileNetV1 alpha 0.5
    "4.2M": _mobilenet_v1(1.0),  # MobileNetV1
    "25.5M": _resnet50(),  # ResNet-50
}
DESCRIPTIONS = {
    "1.4k": "a 3-layer CNN",
    "10k": "a 4-layer CNN",
    "122k": "small CNN",
    "266k": "LeNet-300-100",
    "1.3M": "MobileNetV1 a=0.5",
    "4.2M": "MobileNetV1",
    "25.5M": "ResNet-50",
}


def _fans(shape):
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def _variants(backend):
    from keras import ops

    from keras_str.core import quantile

    def radix_3x11(values, k):
        values = [ops.reshape(v, (-1,)) for v in values]
        total = sum(int(v.shape[0]) for v in values)
        k = ops.clip(ops.cast(k, "int32"), 1, total)
        keys = [quantile._order_keys(v) for v in values]
        return quantile._key_to_value(quantile._kth_radix(keys, k, (11, 11, 10)))

    def method(name):
        return lambda values, k: quantile.kth_smallest(values, k, method=name)

    functions = {
        "noop": lambda values, k: ops.take(ops.reshape(values[0], (-1,)), k - k),
        "sort": method("sort"),
        "bisect": method("bisect"),
        "radix": method("radix"),
        "radix_3x11": radix_3x11,
        "sample": method("sample"),
    }
    if backend in ("tensorflow", "tensorflow_graph"):
        import tensorflow as tf

        xla = backend == "tensorflow"
        return {n: tf.function(f, jit_compile=xla) for n, f in functions.items()}
    if backend == "jax":
        import jax

        return {n: jax.jit(f) for n, f in functions.items()}
    return functions


def worker(backend):
    """Times every variant on `backend`; prints one JSON line per size."""
    import keras
    import numpy as np
    from keras import ops

    from keras_str.core import quantile

    assert keras.backend.backend() == backend.split("_")[0], keras.backend.backend()
    if backend == "torch" and FLAGS.torch_threads:
        import torch

        torch.set_num_threads(FLAGS.torch_threads)
    variants = _variants(backend)
    variants = {n: variants[n] for n in FLAGS.methods}
    too_slow = set()
    rng = np.random.default_rng(0)
    for size in FLAGS.sizes:
        shapes = SIZES[size]
        arrays = []
        for shape in shapes:
            fan_in, fan_out = _fans(shape)
            scale = math.sqrt(2.0 / (fan_in + fan_out))
            arrays.append(np.abs(rng.standard_normal(shape) * scale).astype("float32"))
        total = sum(a.size for a in arrays)
        k_value = int(round(0.9 * total))
        flat = np.concatenate([a.ravel() for a in arrays])
        expected = np.partition(flat, k_value - 1)[k_value - 1]
        sample_error = None
        values = [ops.convert_to_tensor(a) for a in arrays]
        k = ops.convert_to_tensor(k_value, dtype="int32")
        active = {n: f for n, f in variants.items() if n not in too_slow}
        times = {n: [] for n in active}
        for name, function in active.items():  # compile and check
            start = time.perf_counter()
            got = float(ops.convert_to_numpy(function(values, k)))
            if name == "sample":
                sample_error = 100 * (float(np.mean(flat <= np.float32(got))) - 0.9)
            elif name != "noop" and got != float(expected):
                raise AssertionError(f"{backend} {name} {size}: {got} != {expected}")
            first = time.perf_counter() - start
            if first > FLAGS.max_seconds:
                too_slow.add(name)
        for _ in range(FLAGS.rounds):
            for name, function in active.items():
                start = time.perf_counter()
                ops.convert_to_numpy(function(values, k))
                times[name].append(time.perf_counter() - start)
                if times[name][-1] > FLAGS.max_seconds:
                    too_slow.add(name)
        result = {
            "backend": backend,
            "size": size,
            "total": int(total),
            "tensors": len(arrays),
            "auto": quantile.auto_method(int(total)),
            "median_ms": {n: 1000 * float(np.median(t)) for n, t in times.items()},
            "sample_error_points": sample_error,
        }
        emit(result)
        print(
            f"{backend} {size} ({total} in {len(arrays)} tensors): "
            + "  ".join(f"{n}={v:.2f}ms" for n, v in result["median_ms"].items()),
            file=sys.stderr,
            flush=True,
        )


def run_backend(backend):
    command = ["-m", "benchmarks.quantile_cost", f"--worker={backend}",
               f"--sizes={','.join(FLAGS.sizes)}", f"--methods={','.join(FLAGS.methods)}",
               f"--rounds={FLAGS.rounds}", f"--max_seconds={FLAGS.max_seconds}",
               f"--torch_threads={FLAGS.torch_threads}"]
    # "tensorflow_graph" is TensorFlow without XLA.
    return run_worker(command, backend.split("_")[0])


RUNTIMES = {
    "tensorflow": "TF, XLA",
    "jax": "JAX, jit",
    "torch": "torch, eager",
    "tensorflow_graph": "TF, graph (no XLA)",
}


def table(results):
    methods = [m for m in FLAGS.methods if m != "noop"]
    lines = [
        "k-th smallest (k = 90 % of n) over a model's kernels, one tensor a "
        f"layer; median ms of {FLAGS.rounds} alternating rounds, one call each, "
        "including the call and synchronisation overhead (`noop`: the same call "
        "doing one gather). 2 shared x86 cores. `-`: not run (a call took over "
        f"{FLAGS.max_seconds:.0f} s at a smaller size). `sample`: 16,384 fixed "
        "random entries (`auto` above 131,072); `sample error`: the share of "
        "entries at or below its result minus 0.9, in points.",
        "",
        "| backend | n (model) | tensors | noop | "
        + " | ".join(methods)
        + " | auto picks | bisect / radix | sort / radix | sample error |",
        "|---|---|---|---|" + "---|" * len(methods) + "---|---|---|---|",
    ]
    for r in results:
        ms = r["median_ms"]
        cells = [f"{ms[m]:.2f}" if m in ms else "-" for m in methods]
        radix = ms.get("radix")

        def ratio(name):
            if radix and name in ms:
                return f"{ms[name] / radix:.1f}x"
            return "-"

        auto = r["auto"]
        error = r.get("sample_error_points")
        error = "-" if error is None else f"{error:+.2f}"
        lines.append(
            f"| {RUNTIMES[r['backend']]} | {r['total']:,} ({DESCRIPTIONS[r['size']]}) | "
            f"{r['tensors']} | {ms.get('noop', float('nan')):.2f} | "
            + " | ".join(cells)
            + f" | {auto} | {ratio('bisect')} | {ratio('sort')} | {error} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.sizes) - set(SIZES))
    if unknown:
        raise app.UsageError(f"Unknown --sizes {unknown}; expected some of {list(SIZES)}.")
    if FLAGS.worker:
        worker(FLAGS.worker)
        return
    results = []
    for backend in FLAGS.backends:
        results += run_backend(backend)
    text = table(results)
    print("\n" + text)
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    from keras_str.core.io_utils import write_text_atomic

    write_text_atomic(os.path.join(FLAGS.out_dir, "quantile_cost.md"), text + "\n")


if __name__ == "__main__":
    app.run(main)
