"""Shipped traces, time scaling and the fitted workload laws."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from simulation.requests import Requests, arrivals, load_trace
from simulation.traces import fit_mmpp, idc, lognormal_fit, mean_rate_per_s, mmpp_idc, time_scaled
from spec import TokenDist, Workload
from spec.system import ArrivalProcess

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_traces_by_name():
    conv, code = load_trace("azure_conv"), load_trace("azure_code")
    assert len(conv.arrival_s) == 19_366 and len(code.arrival_s) == 8_819
    assert conv.arrival_s[0] == 0.0 and conv.prompt_tokens[:2].tolist() == [374, 396]
    assert conv.output_tokens[:2].tolist() == [44, 109]


def test_time_scaling_hits_the_rate_and_keeps_the_shape():
    tr = load_trace("azure_code")
    fast = time_scaled(tr, 10.0)
    assert mean_rate_per_s(fast.arrival_s) == pytest.approx(10.0, rel=1e-12)
    factor = mean_rate_per_s(tr.arrival_s) / 10.0
    np.testing.assert_allclose(fast.arrival_s, tr.arrival_s * factor, rtol=1e-15)
    np.testing.assert_array_equal(fast.prompt_tokens, tr.prompt_tokens)
    for bad in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="trace_rate_per_s = .*must be a finite number > 0"):
            time_scaled(tr, bad)
    with pytest.raises(ValueError, match="span no time"):
        time_scaled(Requests(np.zeros(3), np.ones(3), np.ones(3)), 1.0)


def test_lognormal_fit_is_the_mean_and_sd_of_log_tokens():
    rng = np.random.default_rng(5)
    x = np.exp(rng.normal(6.0, 0.8, 20_000))
    f = lognormal_fit(x)
    assert f["mu"] == pytest.approx(np.log(x).mean(), rel=1e-12)
    assert f["sigma"] == pytest.approx(np.log(x).std(), rel=1e-12)
    # a true lognormal sample: KS distance below the 1 % critical value 1.63 / sqrt(n)
    assert f["ks"] < 1.63 / math.sqrt(len(x))
    assert f["fit_p90"] == pytest.approx(math.exp(6.0 + 0.8 * stats.norm.ppf(0.9)), rel=0.03)


def _mmpp_stream(proc: ArrivalProcess, rate: float, horizon: float, seed: int) -> np.ndarray:
    tok = TokenDist(mode="log", mean=5.0, sigma=0.5)
    wl = Workload(arrival_rate_per_s=rate, prompt_tokens=tok, output_tokens=tok, arrival=proc)
    return arrivals(np.random.default_rng(seed), wl, horizon)


@pytest.mark.parametrize("window", [1.0, 10.0, 40.0])
def test_mmpp_idc_formula_against_simulated_counts(window):
    """Heffes-Lucantoni's IDC against the simulated MMPP's counts (60,000 s at 20 req/s,
    cycle 30 s): within 8 %, about four standard errors of the estimate at the longest
    window (fewer windows, correlated). A wrong power of (r12 + r21) or a missing factor
    2 is off by 30 % or more."""
    proc = ArrivalProcess(process="mmpp", burst_ratio=5.0, burst_fraction=0.2,
                          burst_cycle_s=30.0)
    a = _mmpp_stream(proc, 20.0, 60_000.0, 11)
    assert idc(a, window) == pytest.approx(mmpp_idc(proc, 20.0, window), rel=0.08)


def test_idc_of_poisson_is_one_and_mmpp_grows_to_its_limit():
    poisson = ArrivalProcess(process="mmpp", burst_ratio=1.0)
    assert mmpp_idc(poisson, 3.0, 100.0) == 1.0
    proc = ArrivalProcess(process="mmpp", burst_ratio=5.0, burst_fraction=0.2,
                          burst_cycle_s=30.0)
    vals = [mmpp_idc(proc, 20.0, t) for t in (1e-6, 1.0, 10.0, 1e3, 1e6)]
    assert vals[0] == pytest.approx(1.0, abs=0.01) and np.all(np.diff(vals) > 0)
    calm, burst, up, down = proc.mmpp_rates(20.0)
    limit = 1 + 2 * (burst - calm) ** 2 * up * down / ((up + down) ** 3 * 20.0)
    assert vals[-1] == pytest.approx(limit, rel=1e-4)


def test_fit_mmpp_recovers_a_known_process():
    proc = ArrivalProcess(process="mmpp", burst_ratio=6.0, burst_fraction=0.15,
                          burst_cycle_s=40.0)
    a = _mmpp_stream(proc, 8.0, 60_000.0, 3)
    fitted, table = fit_mmpp(a)
    for w, (trace, fit) in table.items():
        assert fit == pytest.approx(trace, rel=0.1), w
        assert fit == pytest.approx(mmpp_idc(proc, 8.0, w), rel=0.15), w


def test_committed_workloads_are_what_the_script_writes():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "fit_traces.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_cli_workload_and_scaled_trace(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "simulation", *args], capture_output=True,
                              text=True, timeout=300)

    ok = run("workload=azure_code", "sim_seconds=200", "warmup_seconds=20", "mode=mono",
             "replications=2", "--cfg", "job")
    assert ok.returncode == 0, ok.stderr
    assert "process: mmpp" in ok.stdout and "burst_ratio: 27.6" in ok.stdout
    bad = run("trace_rate_per_s=3")
    assert bad.returncode == 2 and "give trace=NAME_OR_FILE" in bad.stderr
    bad = run("trace=azure_conv", "trace_rate_per_s=-2")
    assert bad.returncode == 2 and "trace_rate_per_s = -2" in bad.stderr
