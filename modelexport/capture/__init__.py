"""Capture: how a model becomes an ONNX graph.

``base`` defines what a capture returns (``Captured``) and the evidence of
module membership it promises to leave on the graph; ``torchscript``,
``dynamo`` and ``fx`` are the three captures.  A strategy is a capture plus
an attribution (``modelexport.attribution``): the capture decides which
nodes exist and what names and metadata they carry, the attribution reads
those to say which module each node belongs to.
"""
