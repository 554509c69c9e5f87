"""The regression gate: BASE and HEAD of the repository measured in one run, judged cell by cell.

``run`` checks both commits out and compares them (quality from a matrix run
of each side, timing from ``paired_timing``'s back-to-back exports, done by
one ``timing_worker`` per side inside its own worktree).
"""
