"""Moved to keras_str_cli/inspect_tflite.py, installed as the `keras-str-inspect` command.

Kept so that `python -m tflite.inspect_tflite` still works from the repository root.
"""

from keras_str_cli.inspect_tflite import run

if __name__ == "__main__":
    run()
