from keras_str.layers.conv import STRConv1D
from keras_str.layers.conv import STRConv2D
from keras_str.layers.dense import STRDense
from keras_str.layers.depthwise_conv import STRDepthwiseConv2D
from keras_str.layers.str_layer import STRLayer
