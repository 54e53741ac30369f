"""Moved to keras_str_cli/benchmark_tflite.py, installed as the `keras-str-benchmark` command.

Kept so that `python -m tflite.benchmark_tflite` still works from the repository root.
"""

from keras_str_cli.benchmark_tflite import run

if __name__ == "__main__":
    run()
