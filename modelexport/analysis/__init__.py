"""What can be known about a model before exporting it.

``analyzer`` reads its structure and the source of its ``forward``s
(``ModelAnalyzer``, ``ModelCharacteristics``); ``execution_evidence``
watches one forward at the ATen level; ``trace_evidence`` traces the model
as the TorchScript exporter would.  The selector decides from these,
the export's report warns from them, and the ownership check reads which
modules use a descendant's parameters directly.
"""
