"""The zoo matrix harness: every zoo model x every strategy, measured and scored."""

from modelexport.harness.cells import CellResult, CellSpec, run_cell
from modelexport.harness.runner import MatrixRun, run_matrix, write_outputs

__all__ = ["CellResult", "CellSpec", "MatrixRun", "run_cell", "run_matrix", "write_outputs"]
