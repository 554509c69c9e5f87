"""Attribution: which module each captured node belongs to.

``scope_names`` resolves TorchScript node scopes on the module tree (HTP),
``name_scopes`` reads torch.export's own records (DYNAMO), ``op_paths`` looks
up the FX capture's op table (FX), and ``usage`` matches recorded module
calls onto the graph by value (USAGE_BASED), which needs no evidence from
the capture at all.  The shared projection pass (``tagging``) places the
nodes none of them reach.
"""
