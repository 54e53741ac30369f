"""keras-str: learnable sparsity (Soft Threshold Reparameterization, ST-3) for Keras 3.

The lifecycle, one public function an arrow:
`sparsify` (dense -> sparse-trainable) -> `fit` (methods advance in-step)
-> `strip` (plain Keras, exact zeros) -> `export_tflite` (sparse .tflite).
"""

from keras_str import ops
from keras_str.analysis.n_m_check import NMCheck
from keras_str.analysis.n_m_check import check_n_m
from keras_str.analysis.report import LayerSparsity
from keras_str.analysis.report import SparsityReport
from keras_str.analysis.report import sparsity_report
from keras_str.core.schedules import ConstantSchedule
from keras_str.core.schedules import PolynomialSchedule
from keras_str.export.litert import predict_tflite
from keras_str.export.litert import time_tflite
from keras_str.export.tflite import ExportReport
from keras_str.export.tflite import export_tflite
from keras_str.layers import STRBatchNormalization
from keras_str.layers import STRConv1D
from keras_str.layers import STRConv1DTranspose
from keras_str.layers import STRConv2D
from keras_str.layers import STRConv2DTranspose
from keras_str.layers import STRConv3D
from keras_str.layers import STRConv3DTranspose
from keras_str.layers import STRDense
from keras_str.layers import STRDepthwiseConv1D
from keras_str.layers import STRDepthwiseConv2D
from keras_str.layers import STREinsumDense
from keras_str.layers import STREmbedding
from keras_str.layers import STRGRU
from keras_str.layers import STRLSTM
from keras_str.layers import STRMultiHeadAttention
from keras_str.layers import STRReversibleEmbedding
from keras_str.layers import STRSimpleRNN
from keras_str.layers import SparseKernelLayer
from keras_str.methods import GMP
from keras_str.methods import LowRankSTR
from keras_str.methods import ST3
from keras_str.methods import STR
from keras_str.methods import SparsityMethod
from keras_str.methods import StructuredSTR
from keras_str.saving import load_dense_weights
from keras_str.saving import load_model
from keras_str.training.budget import layer_budget
from keras_str.training.callbacks import SparsityMonitor
from keras_str.training.checks import SparsityChecks
from keras_str.training.weight_decay import apply_weight_decay
from keras_str.transforms.shrink import shrink_channels
from keras_str.transforms.sparsify import sparsify
from keras_str.transforms.strip import strip

# The public API: what `from keras_str import *` gives and the docs reference.
__all__ = [
    "ops",
    "NMCheck",
    "check_n_m",
    "LayerSparsity",
    "SparsityReport",
    "sparsity_report",
    "ConstantSchedule",
    "PolynomialSchedule",
    "predict_tflite",
    "time_tflite",
    "ExportReport",
    "export_tflite",
    "STRBatchNormalization",
    "STRConv1D",
    "STRConv1DTranspose",
    "STRConv2D",
    "STRConv2DTranspose",
    "STRConv3D",
    "STRConv3DTranspose",
    "STRDense",
    "STRDepthwiseConv1D",
    "STRDepthwiseConv2D",
    "STREinsumDense",
    "STREmbedding",
    "STRGRU",
    "STRLSTM",
    "STRMultiHeadAttention",
    "STRReversibleEmbedding",
    "STRSimpleRNN",
    "SparseKernelLayer",
    "GMP",
    "LowRankSTR",
    "ST3",
    "STR",
    "SparsityMethod",
    "StructuredSTR",
    "load_dense_weights",
    "load_model",
    "layer_budget",
    "SparsityMonitor",
    "SparsityChecks",
    "apply_weight_decay",
    "shrink_channels",
    "sparsify",
    "strip",
]

__version__ = "0.3.0"
