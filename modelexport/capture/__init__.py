"""Capture: how a model becomes an ONNX graph.

The TorchScript trace lives here; torch.export is in ``strategies.dynamo``.

A strategy is a capture plus an attribution (``modelexport.attribution``):
the capture decides which nodes exist and what names and metadata they carry,
the attribution reads those to say which module each node belongs to.
"""
