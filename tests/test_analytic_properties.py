"""Generic checks over the formula registry, and properties that must hold whatever the
inputs (hypothesis)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analytic
from analytic.queues import METHODS

TWO_MOMENT = ["allen_cunneen", "cosmetatos", "whitt93", "kimura", "kimura_exact"]
FAST = [m for m in METHODS if m != "kimura_exact"]  # kimura_exact solves a chain per point

rho_st = st.floats(0.02, 0.97)
servers_st = st.integers(1, 40)
scv_st = st.floats(0.0, 4.0)


# ------------------------------------------------------------------ generic registry tests
@pytest.mark.parametrize("method", list(METHODS))
def test_finite_below_saturation_inf_at_and_above(method):
    c = np.array([1, 2, 4, 8])
    es = 1.0
    for rho, finite in ((0.5, True), (1.0, False), (1.3, False)):
        w = analytic.mean_wait(rho * c / es, es, 0.8, c, method=method)
        assert np.all(np.isfinite(w) == finite), (method, rho, w)
        q = analytic.wait_quantile(0.99, rho * c / es, es, 0.8, c, method=method)
        assert np.all(np.isfinite(q) == finite), (method, rho, q)


@pytest.mark.parametrize("method", list(METHODS))
def test_shape_kept_and_scalars_give_floats(method):
    lam = np.linspace(0.5, 3.0, 6).reshape(2, 3)
    w = analytic.mean_wait(lam, 1.0, 0.5, 4, method=method)
    assert w.shape == (2, 3)
    s = analytic.mean_wait(2.0, 1.0, 0.5, 4, method=method)
    assert isinstance(s, float)
    assert analytic.mean_wait(0.0, 1.0, 0.5, 4, method=method) == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"arrival_rate": -1.0}, "arrival_rate = -1.0", id="negative rate"),
    pytest.param({"arrival_rate": float("nan")}, "arrival_rate = nan", id="NaN rate"),
    pytest.param({"service_mean": 0.0}, "service_mean = 0.0: must be a finite number > 0",
                 id="zero service"),
    pytest.param({"servers": 0}, "servers = 0.0: must be a whole number >= 1", id="no servers"),
    pytest.param({"servers": 2.5}, "servers = 2.5", id="fractional servers"),
    pytest.param({"service_scv": -0.1}, "service_scv = -0.1", id="negative scv"),
    pytest.param({"arrival_scv": float("inf")}, "arrival_scv = inf", id="infinite ca2"),
    pytest.param({"method": "bogus"}, "method = 'bogus': must be one of", id="unknown method"),
])
def test_invalid_input_names_the_argument(kwargs, message):
    args = {"arrival_rate": 1.0, "service_mean": 1.0, "service_scv": 1.0, "servers": 2}
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        analytic.mean_wait(**args)
    assert message in str(err.value)


def test_erlang_c_edges():
    assert analytic.erlang_c(4, 0.0) == 0.0
    assert analytic.erlang_c(4, 4.0) == 1.0
    assert analytic.erlang_c(4, 9.0) == 1.0
    with pytest.raises(ValueError, match="offered_load = -1.0"):
        analytic.erlang_c(4, -1.0)


# ------------------------------------------------------------------ properties
@settings(max_examples=200, deadline=None)
@given(c=servers_st, rho=st.floats(0.0, 1.5))
def test_delay_probability_in_unit_interval(c, rho):
    p = analytic.erlang_c(c, rho * c)
    assert 0.0 <= p <= 1.0


@settings(max_examples=100, deadline=None)
@given(c=servers_st, rho=rho_st, cs2=scv_st, bump=st.floats(1.01, 1.3),
       method=st.sampled_from(FAST))
def test_wait_rises_with_load(c, rho, cs2, bump, method):
    lo = analytic.mean_wait(rho * c, 1.0, cs2, c, method=method)
    hi = analytic.mean_wait(min(rho * bump, 0.99) * c, 1.0, cs2, c, method=method)
    assert hi >= lo * (1 - 1e-12)


@settings(max_examples=100, deadline=None)
@given(c=servers_st, rho=rho_st, cs2=st.floats(0.0, 3.0), more=st.floats(0.05, 1.0),
       method=st.sampled_from(["allen_cunneen", "kimura", "cosmetatos", "whitt93"]))
def test_wait_rises_with_service_variability(c, rho, cs2, more, method):
    lo = analytic.mean_wait(rho * c, 1.0, cs2, c, method=method)
    hi = analytic.mean_wait(rho * c, 1.0, cs2 + more, c, method=method)
    assert hi >= lo * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 12), rho=rho_st, method=st.sampled_from(TWO_MOMENT))
def test_exponential_service_reproduces_mmc(c, rho, method):
    w = analytic.mean_wait(rho * c, 1.0, 1.0, c, method=method)
    assert w == pytest.approx(analytic.mmc_wait(rho * c, 1.0, c), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(c=servers_st, rho=rho_st, cs2=scv_st, method=st.sampled_from(FAST))
def test_one_more_server_never_raises_the_wait(c, rho, cs2, method):
    lam = rho * c
    assert analytic.mean_wait(lam, 1.0, cs2, c + 1, method=method) <= \
        analytic.mean_wait(lam, 1.0, cs2, c, method=method) * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(0.05, 12.0), c=st.integers(1, 16), disagg=st.booleans(),
       q=st.sampled_from([0.5, 0.9, 0.99]))
def test_ttft_never_below_prefill_plus_one_token(rate, c, disagg, q):
    import spec

    cfg = spec.default_config()
    cl = cfg.cluster_disagg if disagg else cfg.cluster_mono
    grid = {"prefill_gpus": c, "decode_gpus": c} if disagg else {"num_gpus": c}
    est = analytic.estimate(cfg.workload, cl, arrival_rate_per_s=rate, **grid)
    floor = est.mean_prefill_s + est.first_token_s
    assert est.mean_ttft_s >= floor
    # every TTFT is at least min_value prompt tokens of prefill plus one token
    smallest = cfg.workload.prompt_tokens.min_value / cl.prefill_tokens_per_s + est.first_token_s
    assert est.quantile(q) >= smallest * (1 - 1e-12)
    assert math.isfinite(est.mean_ttft_s) == bool(est.stable)
