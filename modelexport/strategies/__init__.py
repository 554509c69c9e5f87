"""Export strategies; importing this package registers the built-in ones."""

from modelexport.strategies import builtin  # noqa: F401  (registration)
from modelexport.strategies.base import (
    ExportRequest,
    Strategy,
    StrategyResult,
    get_strategy,
    register_strategy,
    strategy_names,
)

__all__ = [
    "ExportRequest",
    "Strategy",
    "StrategyResult",
    "get_strategy",
    "register_strategy",
    "strategy_names",
]
