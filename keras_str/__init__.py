"""keras-str: learnable sparsity (Soft Threshold Reparameterization) for Keras 3."""

from keras_str import ops
from keras_str.budget import layer_budget
from keras_str.callbacks import SparsityMonitor
from keras_str.callbacks import UpdateSparsity
from keras_str.export import ExportReport
from keras_str.export import export_tflite
from keras_str.layers import STRConv1D
from keras_str.layers import STRConv2D
from keras_str.layers import STRDense
from keras_str.layers import STRDepthwiseConv2D
from keras_str.layers import STRLayer
from keras_str.litert import predict_tflite
from keras_str.litert import time_tflite
from keras_str.methods import GMP
from keras_str.methods import ST3
from keras_str.methods import STR
from keras_str.methods import SparsityMethod
from keras_str.report import LayerSparsity
from keras_str.report import SparsityReport
from keras_str.report import sparsity_report
from keras_str.saving import load_model
from keras_str.schedules import ConstantSchedule
from keras_str.schedules import PolynomialSchedule
from keras_str.sparsify import sparsify
from keras_str.strip import strip
from keras_str.weight_decay import apply_weight_decay

__version__ = "0.1.0"
