import numpy as np
import keras
import keras_str

# A small model and data for the examples on this page; bring your own.
x = np.random.rand(256, 28, 28, 1).astype("float32")
y = np.random.randint(0, 10, size=(256,))
dense_model = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
    keras.layers.Flatten(),
    keras.layers.Dense(32, activation="relu", name="hidden"),
    keras.layers.Dense(10, name="logits"),
])
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
