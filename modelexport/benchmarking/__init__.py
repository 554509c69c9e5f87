"""Benchmark support outside the zoo matrix.

asv's cached matrix (``asv_matrix``), history over past commits (``history``,
in git worktrees: ``worktrees``), the offline dashboard (``dashboard``), the
overhead over plain ``torch.onnx.export`` (``overhead``) and the synthetic
graph the tagging benchmarks scale (``synthetic``).
"""
