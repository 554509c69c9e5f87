"""The model zoo: models built from configs with seeded weights, in tiers.

Importing the package registers every built-in entry.
"""

from model_zoo import cnn, custom, transformers  # noqa: F401  (registration)
from model_zoo.registry import TIERS, ZooEntry, entries, get_entry, zoo_entry

__all__ = ["TIERS", "ZooEntry", "entries", "get_entry", "zoo_entry"]
