"""How channels line up along a graph: components that leave together, and the tensors made of them.

`ChannelMacs` (in-step MACs) and `channel_groups` (GMP's channel ranking)
both read the graph of the thresholded layers through these.
"""


class Layout:
    """A tensor's channels: segments of components (a concatenation's inputs), `copies` times (Flatten)."""

    def __init__(self, width, components, copies):
        self.width = width
        self.components = list(components)
        self.copies = copies

    @property
    def channels(self):
        """The channels of one copy (what the in-step masks of this tensor hold)."""
        return self.width // self.copies if self.copies else 0

    def roots(self):
        return [component.root() for component in self.components]

    def starts(self):
        """`(offset, root)` of each segment, within one copy."""
        offset = 0
        for root in self.roots():
            yield offset, root
            offset += root.width

    def block(self):
        for root in self.roots():
            root.blocked = True

    def aligns_with(self, other):
        """Whether `other` has segments of the same widths, channel for channel."""
        return self.copies == other.copies and [c.root().width for c in self.components] == [
            c.root().width for c in other.components
        ]


class Component:
    """Tensors (or segments of them) whose channels are removed together (one channel index space)."""

    def __init__(self, width):
        self.width = width
        self.parent = None
        self.blocked = False
        self.active = False  # a thresholded channel flows in
        self.read = []  # tensors kernel layers read

    def root(self):
        component = self
        while component.parent is not None:
            component = component.parent
        return component

    def join(self, other):
        mine, theirs = self.root(), other.root()
        if mine is theirs:
            return mine
        if mine.width != theirs.width:
            mine.blocked = True
        theirs.parent = mine
        mine.blocked |= theirs.blocked
        mine.active |= theirs.active
        mine.read.extend(theirs.read)
        return mine


def graph_nodes(layers):
    """Every node of the graph the layers are called in (inputs to outputs)."""
    found = {}
    frontier = [node for layer in layers for node in layer._inbound_nodes]
    while frontier:
        node = frontier.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        for tensor in node.input_tensors:
            operation, index, _ = tensor._keras_history
            frontier.append(operation._inbound_nodes[index])
        if node.operation is not None:
            frontier.extend(node.operation._outbound_nodes)
    return list(found.values())


def topological(nodes):
    """`nodes` ordered so that each comes after the nodes producing its inputs."""
    by_output = {}
    for node in nodes:
        for tensor in node.outputs:
            by_output[id(tensor)] = node
    ordered, done = [], set()
    for start in nodes:
        stack = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in done:
                continue
            if expanded:
                done.add(id(node))
                ordered.append(node)
                continue
            stack.append((node, True))
            for tensor in node.input_tensors:
                producer = by_output.get(id(tensor))
                if producer is not None and id(producer) not in done:
                    stack.append((producer, False))
    return ordered
