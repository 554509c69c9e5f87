"""USAGE_BASED's value matching: the fast closeness test must answer exactly as numpy does.

It decides which graph tensor a module call's output is, so a faster test
that disagreed with ``np.allclose`` anywhere (infinities, NaN, values right
at the tolerance, a difference past the first piece) would move tags.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelexport.attribution.usage import _ATOL, _RTOL, all_close


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(1000).astype(np.float32)
    at_edge = base + (_ATOL + _RTOL * np.abs(base)).astype(np.float32)
    late = base.copy()
    late[-1] += 1.0  # past the first piece of 256
    cases = [("equal", base, base.copy()), ("within", base, base + 1e-7), ("late", late, base),
             ("at the tolerance", at_edge, base), ("just over", base + 1e-3, base)]
    for name, value in (("inf", np.inf), ("-inf", -np.inf), ("nan", np.nan)):
        found, wanted = base.copy(), base.copy()
        wanted[10] = value
        cases.append((f"wanted {name}", found, wanted))
        both = wanted.copy()
        cases.append((f"both {name}", both, wanted))
        cases.append((f"found {name}", wanted, base.copy()))
    cases.append(("shape", base, base.reshape(10, 100)))
    mask = base > 0
    cases += [("bool", mask, mask.copy()), ("bool differs", mask, ~mask),
              ("int", np.arange(1000), np.arange(1000)),
              ("large int within rtol", np.arange(1000) + 10**6, np.arange(1000) + 10**6 + 50)]
    return cases


@pytest.mark.parametrize(("name", "found", "wanted"), _cases(), ids=[c[0] for c in _cases()])
def test_all_close_answers_as_numpy_does(name, found, wanted):
    expected = found.shape == wanted.shape and np.allclose(found, wanted, atol=_ATOL, rtol=_RTOL)
    assert all_close(found, wanted, chunk=256) == expected
