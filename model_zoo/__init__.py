"""The model zoo: models built from configs with seeded weights, in tiers.

Importing the package registers every built-in entry: the hand-written
``tiny``/``full`` entries, the plain-PyTorch ``idioms`` and the generated
``wide`` tier (one entry per transformers architecture).
"""

from model_zoo import cnn, custom, idioms, transformers, wide  # noqa: F401  (registration)
from model_zoo.registry import ALL_TIERS, TIERS, ZooEntry, entries, get_entry, zoo_entry

wide.register_all()

__all__ = ["ALL_TIERS", "TIERS", "ZooEntry", "entries", "get_entry", "zoo_entry"]
