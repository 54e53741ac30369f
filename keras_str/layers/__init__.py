"""Sparse-trainable Keras layers, and the registry of the layer types they replace."""

from keras_str.core.kernel_specs import SparseBlockSpec
from keras_str.core.kernel_specs import SparseLayerSpec
from keras_str.core.kernel_specs import register_sparse_block
from keras_str.core.kernel_specs import register_sparse_layer
from keras_str.layers.attention import STRMultiHeadAttention
from keras_str.layers.base import SparseKernelLayer
from keras_str.layers.batch_norm import STRBatchNormalization
from keras_str.layers.conv import STRConv1D
from keras_str.layers.conv import STRConv2D
from keras_str.layers.conv import STRConv3D
from keras_str.layers.conv_transpose import STRConv1DTranspose
from keras_str.layers.conv_transpose import STRConv2DTranspose
from keras_str.layers.conv_transpose import STRConv3DTranspose
from keras_str.layers.dense import STRDense
from keras_str.layers.depthwise_conv import STRDepthwiseConv1D
from keras_str.layers.depthwise_conv import STRDepthwiseConv2D
from keras_str.layers.einsum_dense import STREinsumDense
from keras_str.layers.embedding import STREmbedding
from keras_str.layers.embedding import STRReversibleEmbedding
from keras_str.layers.recurrent import KernelWeight
from keras_str.layers.recurrent import STRGRU
from keras_str.layers.recurrent import STRKernelWeight
from keras_str.layers.recurrent import STRLSTM
from keras_str.layers.recurrent import STRSimpleRNN
