"""From a stripped Keras model to a sparse .tflite file that LiteRT runs (needs TensorFlow)."""
