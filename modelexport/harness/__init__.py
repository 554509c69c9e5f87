"""The zoo matrix harness: every zoo model x every strategy, measured and scored."""

from modelexport.harness.cells import CellResult, CellSpec, ModelSpec, run_cell, run_model
from modelexport.harness.runner import MatrixRun, run_matrix, write_outputs

__all__ = ["CellResult", "CellSpec", "MatrixRun", "ModelSpec", "run_cell", "run_matrix",
           "run_model", "write_outputs"]
