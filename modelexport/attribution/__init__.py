"""Attribution: which module each captured node belongs to.

Scopes written by the exporter (``attribution.scopes``), the FX graph's own
module paths (``strategies.fx``) or usage matching of recorded module calls
(``strategies.usage_based``); the shared projection pass (``tagging``) places
the nodes none of them reach.
"""
