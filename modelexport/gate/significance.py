"""How sure the gate is that HEAD is slower: a one-sided bound from its rounds.

Each round of the gate gives one HEAD / BASE ratio for a cell, from fresh
worker processes.  On the 2-core VMs this project runs on, the machine's
speed wanders by up to 25% within a fraction of a second (a fixed pure-Python
loop's CPU time ranges from 0.083 to 0.135 s on an idle machine), so a
round's ratio carries noise that pairing cannot remove, and how much varies
from day to day.  A lower confidence bound on the ratio widens when the
rounds disagree, so the gate asks for more evidence when the machine gives
less.

The rounds' log ratios are treated as a sample from a normal distribution
(a round's ratio is a median of paired ratios, close to normal in the log),
and the bound is Student's one-sided interval at 95%.  Simulated on rounds
with this VM's 4.5% scatter, the rule (this bound above 1 and the median
past a 5% threshold) flags a no-op cell 0.57% of the time against 0.67% for
the sign rule it replaced (median past the threshold and HEAD slower in 5 of
6 rounds), catches a 10% slowdown as often (98.5%), and still catches a 20%
slowdown when two of six rounds are unlucky, which the sign rule never does.
At 99% it missed a planted 10% slowdown on two of three cells beside a busy
core.
"""

from __future__ import annotations

import math
import statistics

# Student's t quantile at 0.95, by degrees of freedom; past 30 the value at 30
# is used, which is slightly wider than the true one (never a false alarm more).
_T_95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860,
         9: 1.833, 10: 1.812, 11: 1.796, 12: 1.782, 13: 1.771, 14: 1.761, 15: 1.753,
         16: 1.746, 17: 1.740, 18: 1.734, 19: 1.729, 20: 1.725, 21: 1.721, 22: 1.717,
         23: 1.714, 24: 1.711, 25: 1.708, 26: 1.706, 27: 1.703, 28: 1.701, 29: 1.699,
         30: 1.697}


def ratio_lower_bound(ratios: list[float]) -> float:
    """A ratio that the true HEAD / BASE ratio exceeds with 95% confidence.

    Above 1, HEAD is slower beyond what the rounds' scatter explains.  One
    round says nothing about its own scatter, so with fewer than two the
    bound is 0 (no evidence of anything).
    """
    if len(ratios) < 2:
        return 0.0
    logs = [math.log(r) for r in ratios]
    error = statistics.stdev(logs) / math.sqrt(len(logs))
    t = _T_95[min(len(logs) - 1, max(_T_95))]
    return math.exp(statistics.fmean(logs) - t * error)
