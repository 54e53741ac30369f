"""Moved to keras_str_cli/export_tflite.py, installed as the `keras-str-export` command.

Kept so that `python -m tflite.export_tflite` still works from the repository root.
"""

from keras_str_cli.export_tflite import run

if __name__ == "__main__":
    run()
