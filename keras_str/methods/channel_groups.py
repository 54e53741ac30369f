"""Output channels that `shrink_channels` removes together, grouped for GMP's channel ranking."""

import math

from keras_str.methods.channel_layout import Component
from keras_str.methods.channel_macs import ChannelMacs


class ChannelGroup:
    """Output channels of several layers that `shrink_channels` removes together.

    Channel `c` of the group is channel `offset + c` of each member
    `(layer index, offset)`.
    """

    def __init__(self, width):
        self.width = width
        self.members = []


def channel_groups(layers):
    """The `layers`' output channels as `ChannelGroup`s, in the order first met.

    Each layer's channels are one group or consecutive segments of several
    (a depthwise conv reading a concatenation). Layers not called once each
    in one functional or Sequential graph, or whose channels the graph does
    not follow, are each a group of their own.
    """
    segments = [None] * len(layers)
    if all(len(layer._inbound_nodes) == 1 for layer in layers):
        counter = ChannelMacs(layers)
        segments = [counter.output_segments(layer) for layer in layers]
    groups = {}
    for index, layer in enumerate(layers):
        found = segments[index]
        width = output_channel_count(layer)
        if not found or sum(component.width for _, component in found) != width:
            found = [(0, Component(width))]
        for offset, component in found:
            if id(component) not in groups:
                groups[id(component)] = (component, ChannelGroup(component.width))
            groups[id(component)][1].members.append((index, offset))
    return [group for _, group in groups.values()]


def output_channel_count(layer):
    """The output channels of a thresholded layer's kernel."""
    shape = layer.raw_kernel.shape
    return math.prod(shape[a] for a in layer.kernel_spec.output_axes(layer))
