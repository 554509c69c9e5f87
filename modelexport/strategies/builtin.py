"""The built-in strategies, declared as data: each is one capture with one attribution.

Registration order is the order users see in help texts and the matrix's
columns.  HTP and USAGE_BASED share the TorchScript capture and differ only
in how they attribute nodes, which is what makes USAGE_BASED a check on HTP.
"""

from __future__ import annotations

from modelexport.attribution.name_scopes import NameScopeAttribution
from modelexport.attribution.op_paths import OpPathAttribution
from modelexport.attribution.scope_names import ScopeNameAttribution
from modelexport.attribution.usage import UsageAttribution
from modelexport.capture.dynamo import DynamoCapture
from modelexport.capture.fx import FxCapture
from modelexport.capture.torchscript import TorchScriptCapture
from modelexport.strategies.base import Strategy, register_strategy

_TORCHSCRIPT = TorchScriptCapture()

BUILTIN_STRATEGIES = (
    register_strategy(Strategy(
        "dynamo", "torch.onnx dynamo exporter; tags from its own name_scopes metadata",
        DynamoCapture(), NameScopeAttribution())),
    register_strategy(Strategy(
        "fx", "torch.fx symbolic trace; each op's module path carried as a unique scope",
        FxCapture(), OpPathAttribution())),
    register_strategy(Strategy(
        "htp", "TorchScript trace; node scopes resolved against the module tree, rest projected",
        _TORCHSCRIPT, ScopeNameAttribution())),
    register_strategy(Strategy(
        "usage_based", "hooks record each module's tensors and parameters; matched onto the graph",
        _TORCHSCRIPT, UsageAttribution())),
)
