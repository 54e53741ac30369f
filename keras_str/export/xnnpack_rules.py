"""Does a .tflite graph qualify for XNNPACK's sparse (NCHW) inference?

XNNPACK runs a float graph region with sparse 1x1 convolutions only when
the whole region can switch to its NCHW layout: it must start at a 3x3
stride-2 convolution on 3 channels with 1 pixel of padding on every side,
contain only 1x1 convolutions, depthwise 3x3/5x5 convolutions (depth
multiplier 1, symmetric padding), element-wise ops, and end at a global
average pooling; its 1x1 convolution weights must be more than 2/3 zeros.
Anything else keeps the model dense, silently. These rules follow
XNNPACK's layout-compatibility check; the emulated ARM core in
`shared/armsim` is what confirms them (see docs/guide/export.md).
"""

import dataclasses
import re

import numpy as np

from keras_str.export.flatbuffer import buffer_values
from keras_str.export.flatbuffer import decode_sparse
from keras_str.export.flatbuffer import op_name
from keras_str.export.flatbuffer import parse
from keras_str.export.flatbuffer import schema

SPARSE_ZERO_FRACTION = 2.0 / 3.0
_ELEMENTWISE = {
    "ADD", "MUL", "SUB", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1",
    "LOGISTIC", "HARD_SWISH", "LEAKY_RELU", "ABS", "NEG", "TANH", "ELU",
    "SQUARE", "SQRT", "MAXIMUM", "MINIMUM",
}
_WEIGHT_PREPARATION = {"DENSIFY", "DEQUANTIZE"}
# Ops whose second input is the layer's weights.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "CONV_3D",
                "TRANSPOSE_CONV", "BATCH_MATMUL")


@dataclasses.dataclass
class XNNPackVerdict:
    """Whether XNNPACK's sparse inference applies, and if not, why not."""

    eligible: bool
    reasons: list
    pointwise_params: int
    pointwise_zeros: int
    # The sparse region reaches a conv after the pooling: XNNPACK on ARM then
    # fails to load the model ("XNNPack delegate failed to reshape runtime").
    fails_on_arm: bool = False

    @property
    def pointwise_zero_fraction(self):
        if not self.pointwise_params:
            return 0.0
        return self.pointwise_zeros / self.pointwise_params

    def summary(self):
        if self.eligible:
            return (
                "XNNPACK sparse inference: eligible (1x1 convolutions "
                f"{100 * self.pointwise_zero_fraction:.1f}% zeros); on ARM "
                "CPUs they run with sparse kernels. x86 CPUs with AVX never "
                "use them."
            )
        return "XNNPACK sparse inference: not eligible, the model runs dense:\n" + "\n".join(
            f"  - {reason}" for reason in self.reasons
        )


class _Graph:
    """A parsed `.tflite` graph whose ops can name the Keras layer they compute."""

    def __init__(self, model_content, layer_names=(), kernel_layers=()):
        # Longest first, so "conv1_bn" is not reported as "conv1".
        self.layer_patterns = [
            (name, re.compile(rf"(^|[/;]){re.escape(name)}(_\d+)?/"))
            for name in sorted(layer_names, key=len, reverse=True)
        ]
        self.fb = schema()
        self.model = parse(model_content)
        self.subgraph = self.model.subgraphs[0]
        self.ops = []
        self.producer = {}
        for op in self.subgraph.operators:
            name = op_name(self.model, op)
            self.ops.append((name, op))
            for output in op.outputs:
                self.producer[int(output)] = (name, op)
        # `(op name, op)` of the ops computing with constant weights, in order.
        self.weighted_ops = [
            (name, op) for name, op in self.ops
            if name in WEIGHTED_OPS and op.inputs is not None and len(op.inputs) >= 2
            and self.is_constant(int(op.inputs[1]))
        ]
        # Tensor names are ambiguous ("conv_1/" is the second call of "conv"
        # or the layer "conv_1"): each weighted op is matched to the next
        # kernel layer in model order whose kernel has the same dimensions;
        # names are the fallback. A shared layer's calls read one weight
        # tensor: they share its label.
        self.kernel_labels = {}
        by_weights = {}
        unassigned = list(kernel_layers)
        for _, op in self.weighted_ops:
            weights = int(op.inputs[1])
            if weights not in by_weights:
                dims = sorted(self.shape(weights))
                match = next((k for k in unassigned if sorted(k[1]) == dims), None)
                if match is None:
                    continue
                unassigned.remove(match)
                by_weights[weights] = match[0]
            self.kernel_labels[id(op)] = by_weights[weights]

    def is_constant(self, index):
        producer = self.producer.get(index)
        if producer is not None:
            return producer[0] in _WEIGHT_PREPARATION
        tensor = self.tensor(index)
        return buffer_values(self.model, tensor) is not None or tensor.sparsity is not None

    def tensor(self, index):
        return self.subgraph.tensors[int(index)]

    def label(self, op):
        """The Keras layer an op comes from: its kernel's layer, else read off tensor names."""
        if id(op) in self.kernel_labels:
            return self.kernel_labels[id(op)]
        candidates = []
        if len(op.inputs) > 1:
            weights = int(op.inputs[1])
            producer = self.producer.get(weights)
            if producer is not None and producer[0] in _WEIGHT_PREPARATION:
                weights = int(producer[1].inputs[0])
            candidates.append(self.tensor(weights).name)
        candidates.append(self.tensor(op.outputs[0]).name)
        names = [c.decode() for c in candidates if c]
        for name in names:  # the weights name first: outputs carry fused ops
            for layer_name, pattern in self.layer_patterns:
                if pattern.search(name):
                    return layer_name
        return names[-1].split(";")[0] if names else "?"

    def shape(self, index):
        return [int(d) for d in self.tensor(index).shape]

    def constant(self, index):
        """A constant's values, through DENSIFY/DEQUANTIZE, or None."""
        index = int(index)
        producer = self.producer.get(index)
        if producer is not None and producer[0] in _WEIGHT_PREPARATION:
            return self.constant(producer[1].inputs[0])
        tensor = self.tensor(index)
        values = buffer_values(self.model, tensor)
        if values is None:
            return None
        if tensor.sparsity is not None:
            return decode_sparse(tensor, values)
        return values.reshape([int(d) for d in tensor.shape])


def _conv_padding(graph, op, options, kernel):
    """Padding (top, bottom, left, right) the conv really applies."""
    input_index = op.inputs[0]
    height, width = graph.shape(input_index)[1:3]
    pads = [0, 0, 0, 0]
    producer = graph.producer.get(int(input_index))
    if producer is not None and producer[0] == "PAD":
        paddings = graph.constant(producer[1].inputs[1])
        if paddings is not None:
            pads = [int(v) for v in paddings[1:3].reshape(-1)]
            height += pads[0] + pads[1]
            width += pads[2] + pads[3]
    if options.padding == graph.fb.Padding.SAME:
        for axis, (size, stride, k) in enumerate(
            [(height, options.strideH, kernel[0]), (width, options.strideW, kernel[1])]
        ):
            out = -(-size // stride)
            total = max((out - 1) * stride + k - size, 0)
            pads[2 * axis] += total // 2
            pads[2 * axis + 1] += total - total // 2
    return pads


def check_xnnpack_sparse(model_content, precision="float32", layer_names=(), kernel_layers=()):
    """Checks a `.tflite` against XNNPACK's sparse-inference rules.

    Args:
        model_content: The `.tflite` bytes.
        precision: The export precision; only float models qualify.
        layer_names: The Keras model's layer names, to name the layer that
            breaks a rule (else the TFLite tensor name is used).
        kernel_layers: `(name, kernel shape)` of the model's kernel layers,
            in model order: names the layer of each weighted op exactly.

    Returns:
        An `XNNPackVerdict`.
    """
    if precision not in ("float32", "float16"):
        return XNNPackVerdict(
            False,
            [f"{precision} models never take XNNPACK's sparse path: its sparse "
             "kernels are float only"],
            0,
            0,
        )
    graph = _Graph(model_content, layer_names, kernel_layers)
    reasons = []
    if not any(name == "DENSIFY" for name, _ in graph.ops):
        # XNNPACK tries its sparse path only for sparse-encoded weights: the
        # same zeros stored dense run at exactly the dense cost.
        reasons.append(
            "no weight is stored sparse (no DENSIFY op): XNNPACK attempts "
            "sparse inference only for sparse-encoded weights"
        )
    convs_after_pooling = []
    state = "before"
    params = zeros = 0
    compute_ops = [
        (name, op) for name, op in graph.ops
        if name not in _WEIGHT_PREPARATION and name != "PAD"
    ]
    for name, op in compute_ops:
        label = graph.label(op)
        if state == "before":
            if name != "CONV_2D":
                reasons.append(
                    f"{name} '{label}' comes before the first convolution; the "
                    "sparse region must start at the model's first conv"
                )
                break
            filters = graph.shape(op.inputs[1])
            options = op.builtinOptions
            pads = _conv_padding(graph, op, options, filters[1:3])
            if not (
                filters[1:3] == [3, 3]
                and filters[3] == 3
                and (options.strideH, options.strideW) == (2, 2)
                and pads == [1, 1, 1, 1]
                and (options.dilationHFactor, options.dilationWFactor) == (1, 1)
            ):
                reasons.append(
                    f"first convolution '{label}' is {filters[1]}x{filters[2]} "
                    f"stride {options.strideH} on {filters[3]} channels with "
                    f"padding {pads}; the sparse region must start at a 3x3 "
                    "stride-2 conv on 3 channels padded 1 on every side "
                    "(ZeroPadding2D(1) + padding='valid')"
                )
                break
            state = "inside"
        elif state == "inside":
            if name == "CONV_2D":
                filters = graph.shape(op.inputs[1])
                options = op.builtinOptions
                if filters[1:3] == [1, 1] and (options.strideH, options.strideW) == (1, 1):
                    weights = graph.constant(op.inputs[1])
                    params += filters[0] * filters[3]
                    zeros += int(np.sum(weights == 0)) if weights is not None else 0
                else:
                    reasons.append(
                        f"convolution '{label}' is {filters[1]}x{filters[2]} "
                        f"stride {options.strideH}; inside the sparse region only "
                        "1x1 stride-1 convolutions are allowed"
                    )
            elif name == "DEPTHWISE_CONV_2D":
                filters = graph.shape(op.inputs[1])
                options = op.builtinOptions
                k = filters[1]
                pads = _conv_padding(graph, op, options, filters[1:3])
                channels = graph.shape(op.inputs[0])[3]
                if not (
                    filters[1] == filters[2]
                    and k in (3, 5)
                    and filters[3] == channels
                    and (options.strideH, options.strideW) in ((1, 1), (2, 2))
                    and pads == [(k - 1) // 2] * 4
                ):
                    reasons.append(
                        f"depthwise convolution '{label}' ({filters[1]}x{filters[2]}, "
                        f"stride {options.strideH}, padding {pads}, "
                        f"{filters[3] // max(channels, 1)}x channels) is not 3x3/5x5 "
                        "with depth multiplier 1 and symmetric padding"
                    )
            elif name == "MEAN":
                axes = graph.constant(op.inputs[1])
                if axes is None or sorted(int(a) for a in axes.reshape(-1)) != [1, 2]:
                    reasons.append(f"MEAN '{label}' does not average over height and width")
                state = "after"
            elif name not in _ELEMENTWISE:
                reasons.append(
                    f"{name} '{label}' is not supported inside XNNPACK's sparse "
                    "region (allowed: 1x1 and depthwise convs, element-wise ops, "
                    "then global average pooling)"
                )
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            # GlobalAveragePooling2D(keepdims=True) + 1x1 conv head: the conv
            # joins the sparse region, and its zeros count with the others.
            filters = graph.shape(op.inputs[1])
            if name == "CONV_2D" and filters[1:3] == [1, 1]:
                weights = graph.constant(op.inputs[1])
                params += filters[0] * filters[3]
                zeros += int(np.sum(weights == 0)) if weights is not None else 0
            convs_after_pooling.append(label)
    if state == "inside":
        reasons.append(
            "the graph never reaches a global average pooling, where the sparse "
            "region must end"
        )
    if state != "before" and params == 0:
        reasons.append("the sparse region holds no 1x1 convolution")
    elif params and zeros / params <= SPARSE_ZERO_FRACTION:
        reasons.append(
            f"1x1 convolutions hold {100 * zeros / params:.1f}% zeros; XNNPACK "
            "needs more than 66.7%"
        )
    fails_on_arm = bool(convs_after_pooling) and not reasons
    for label in convs_after_pooling:
        if fails_on_arm:
            reasons.append(
                f"convolution '{label}' after global average pooling: with the "
                "sparse region before it, XNNPACK on ARM fails to load the model "
                "('failed to reshape runtime'); use GlobalAveragePooling2D() + "
                "Dense as the classifier"
            )
        else:
            reasons.append(
                f"convolution '{label}' after global average pooling (a 1x1 conv "
                "head); with the other reasons above the model loads and runs dense"
            )
    return XNNPackVerdict(not reasons, reasons, params, zeros, fails_on_arm)
