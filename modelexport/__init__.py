"""modelexport: PyTorch to ONNX with the module hierarchy preserved on every node."""

from modelexport.analysis.analyzer import ModelAnalyzer, ModelCharacteristics
from modelexport.api import UnifiedExporter, export_model
from modelexport.errors import ModelExportError
from modelexport.names import ExportStrategy, Objective
from modelexport.report import ExportReport
from modelexport.selection.selector import Recommendation, recommend_strategy
from modelexport.sources import LoadedModel, load_model
from modelexport.tags import NodeTag, TagSource, read_tags
from modelexport.version import __version__

__all__ = [
    "ExportReport",
    "ExportStrategy",
    "LoadedModel",
    "ModelAnalyzer",
    "ModelCharacteristics",
    "ModelExportError",
    "NodeTag",
    "Objective",
    "Recommendation",
    "TagSource",
    "UnifiedExporter",
    "__version__",
    "export_model",
    "load_model",
    "read_tags",
    "recommend_strategy",
]
