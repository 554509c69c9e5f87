"""How sure the gate is that HEAD is slower: a one-sided bound from its rounds.

Each round of the gate gives one HEAD / BASE ratio for a cell, from fresh
worker processes.  On the 2-core VMs this project runs on, the machine's
speed wanders by up to 25% within a fraction of a second (a fixed pure-Python
loop's CPU time ranges from 0.083 to 0.135 s on an idle machine), so a
round's ratio carries noise that pairing cannot remove, and how much changes
from one day to the next.  A fixed rule ("slower in 5 of 6 rounds") cannot
follow that: on a quiet day it misses little, on a noisy one it raises false
alarms.  A lower confidence bound on the ratio does follow it: it widens
when the rounds disagree, so the gate asks for more evidence exactly when
the machine gives less.

The rounds' log ratios are treated as a sample from a normal distribution
(a round's ratio is a median of paired ratios, which is close to normal in
the log), and the bound is Student's one-sided interval.
"""

from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.99

# Student's t quantile at 0.99, by degrees of freedom; past 30 the value at 30
# is used, which is slightly wider than the true one (never a false alarm more).
_T_99 = {1: 31.821, 2: 6.965, 3: 4.541, 4: 3.747, 5: 3.365, 6: 3.143, 7: 2.998, 8: 2.896,
         9: 2.821, 10: 2.764, 11: 2.718, 12: 2.681, 13: 2.650, 14: 2.624, 15: 2.602,
         16: 2.583, 17: 2.567, 18: 2.552, 19: 2.539, 20: 2.528, 21: 2.518, 22: 2.508,
         23: 2.500, 24: 2.492, 25: 2.485, 26: 2.479, 27: 2.473, 28: 2.467, 29: 2.462,
         30: 2.457}


def ratio_lower_bound(ratios: list[float]) -> float:
    """A ratio that the true HEAD / BASE ratio exceeds with 99% confidence.

    Above 1, HEAD is slower beyond what the rounds' scatter explains.  One
    round says nothing about its own scatter, so with fewer than two the
    bound is 0 (no evidence of anything).
    """
    if len(ratios) < 2:
        return 0.0
    logs = [math.log(r) for r in ratios]
    error = statistics.stdev(logs) / math.sqrt(len(logs))
    t = _T_99[min(len(logs) - 1, max(_T_99))]
    return math.exp(statistics.fmean(logs) - t * error)
