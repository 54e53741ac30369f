"""keras-str's command-line tools, installed as console scripts by setup.py.

    keras-str-export     a .keras model -> sparse .tflite (checked in LiteRT)
    keras-str-inspect    a .tflite's sparse tensors, ops and XNNPACK verdict
    keras-str-benchmark  dense vs sparse .tflite: sizes and LiteRT latency

Each is also `python -m keras_str_cli.<export_tflite|inspect_tflite|benchmark_tflite>`.
They need TensorFlow and LiteRT (`pip install 'keras-str[export]'`) and say so
when those are missing. This is a package beside `keras_str`, not inside it,
so that the check runs before `import keras_str` imports Keras, which on its
default backend imports TensorFlow.
"""
