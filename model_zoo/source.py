"""``zoo:NAME[:TIER]`` as a model source for ``modelexport.load_model`` and ``--model``.

Registered through the ``modelexport.model_sources`` entry point (pyproject),
so the exporter finds the zoo when it is installed without importing it:
the zoo depends on the exporter, never the other way round.
"""

from __future__ import annotations

from modelexport.errors import ModelLoadError
from modelexport.sources import LoadedModel


def load_zoo_entry(spec: str) -> LoadedModel:
    """A zoo model with its own inputs (offline), from ``zoo:NAME[:TIER]``.

    Entries of every tier resolve, the wide tier's generated ones included;
    without a tier, tiny where the entry has one (a wide entry has only wide).
    """
    from model_zoo import get_entry

    _, name, *rest = spec.split(":")
    try:
        entry = get_entry(name)
        tier = rest[0] if rest else ("tiny" if "tiny" in entry.tiers else entry.tiers[0])
        model = entry.build(tier)
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(str(exc).strip("'\"")) from None
    return LoadedModel(model=model, inputs=entry.inputs(model, tier), source=spec)
