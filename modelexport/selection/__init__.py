"""The selector: fitted rules, kept as data (``selection_rules.json``), and how AUTO reads them.

``selector`` matches a model's characteristics (``modelexport.analysis``)
against the rules of an objective, giving a ``Recommendation`` and AUTO's
fallback order; ``modelexport.harness.selector_fit`` refits the rules from
the zoo matrix's measurements.
"""
