"""modelexport: PyTorch to ONNX with the module hierarchy preserved on every node."""

__version__ = "0.1.0"

from modelexport.api import ExportStrategy, UnifiedExporter, export_model
from modelexport.errors import ModelExportError
from modelexport.report import ExportReport
from modelexport.tags import NodeTag, TagSource, read_tags

__all__ = [
    "ExportReport",
    "ExportStrategy",
    "ModelExportError",
    "NodeTag",
    "TagSource",
    "UnifiedExporter",
    "__version__",
    "export_model",
    "read_tags",
]
