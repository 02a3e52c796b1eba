"""The tests' own exact references against hand-computable values."""

import math

import pytest

from tests.reference import erlang_c, md1_mean_wait, mmc_mean_wait


@pytest.mark.parametrize(("c", "a", "expected"), [
    pytest.param(1, 0.5, 0.5, id="M/M/1: C = rho"),
    pytest.param(2, 1.0, 1.0 / 3.0, id="M/M/2 at a = 1: C = 1/3"),
    pytest.param(3, 2.0, 4.0 / 9.0, id="C(3, 2) = 4/9"),
])
def test_erlang_c_known_values(c, a, expected):
    assert math.isclose(erlang_c(c, a), expected, rel_tol=1e-12)


def test_mm1_and_md1_waits():
    # M/M/1: E[W] = rho / (mu - lam); M/D/1 is half of it.
    assert math.isclose(mmc_mean_wait(0.8, 1.0, 1), 0.8 / 0.2, rel_tol=1e-12)
    assert math.isclose(md1_mean_wait(0.8, 1.0), 0.5 * 0.8 / 0.2, rel_tol=1e-12)
