import numpy as np
import keras
import keras_str

# A dense model and data: bring your own.
x = np.random.rand(512, 28, 28, 1).astype("float32")
y = np.random.randint(0, 10, size=(512,))
dense = keras.Sequential([
    keras.Input((28, 28, 1)),
    keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
    keras.layers.Flatten(),
    keras.layers.Dense(64, activation="relu", name="hidden"),
    keras.layers.Dense(10, name="logits"),
])

# 1. Sparsify: the same network with sparse layers. ST-3 reaches 90 % zeros
#    on a cubic schedule, updated inside the compiled training step.
schedule = keras_str.PolynomialSchedule(0, 12)  # steps 0-12, then fine-tune
model = keras_str.sparsify(
    dense, method=keras_str.ST3(0.9, schedule), weight_decay=5e-4, keep_dense=["logits"]
)

# 2. Train as usual.
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
model.fit(x, y, batch_size=64, epochs=2, verbose=0)
print(keras_str.sparsity_report(model).table())

# 3. Strip: plain Keras layers holding exact zeros; loads without keras-str.
plain = keras_str.strip(model)
plain.save("model.keras")

# 4. Export a sparse .tflite, run in LiteRT and compared with Keras on the way.
report = keras_str.export_tflite(plain, "model.tflite")
print(report.summary())
print(keras_str.predict_tflite("model.tflite", x[:4]).argmax(-1))
