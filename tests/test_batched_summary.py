"""Statistics of batched runs against values worked by hand or known exactly."""

import numpy as np
import pytest

from simulation.batched import ITL_SUB, simulate_batched
from simulation.batched_metrics import histogram_quantiles, summarise_batched
from simulation.requests import Requests, generate_requests
from simulation.runner import run_requests, summarise
from spec import SLO, BatchedColocated, Instance, MonolithicCluster, Profile, config_from_mapping

#: A histogram quantile is read at its bin's middle: within half a bin, and a bin is at
#: most 1/ITL_SUB of its values wide.
HALF_BIN = 0.5 / ITL_SUB  # 0.2 %


def instance(**kw) -> Instance:
    prof = Profile.rates(kw.pop("r_p", 1000.0), kw.pop("r_d", 100.0),
                         kv_capacity_tokens=kw.pop("kv", 10**6), kv_bytes_per_token=1.0)
    return Instance(profile=prof, **kw)


def test_one_request_by_hand():
    """P = 4, O = 2, blocks of 4 tokens, 2 blocks. Prefill 0 -> 4 ms holding 1 block
    (token 1), decode 4 -> 14 ms holding 2 blocks (token 2). Window [0, 20 ms):
    KV block-seconds 1 x 0.004 + 2 x 0.010 = 0.024 of 2 x 0.02 -> 0.6; busy 14 of 20 ms;
    one request and 2 tokens in 20 ms; TTFT 4 ms, TPOT = ITL = 10 ms, E2E 14 ms; in the
    system 0 -> 14 ms, across the window's middle (10 ms + 4 ms): 0.7 on average."""
    req = Requests(np.array([0.0]), np.array([4.0]), np.array([2.0]))
    cluster = BatchedColocated(instances=1, instance=instance(kv=8, block_size=4))
    window = (0.0, 0.02)
    times, eng = simulate_batched(req, cluster, window)
    s = summarise_batched(times, eng, window, (0.5,), SLO(ttft_s=0.005, tpot_s=0.009))
    assert s["kv_occupancy_colocated"] == pytest.approx(0.6)
    assert s["utilisation_colocated"] == pytest.approx(0.7)
    assert s["mean_batch_colocated"] == 1.0
    assert s["mean_in_system"] == pytest.approx(0.7)
    assert s["throughput_rps"] == pytest.approx(50.0)
    assert s["throughput_tokens_per_s"] == pytest.approx(100.0)
    assert s["mean_ttft_s"] == pytest.approx(0.004) and s["mean_e2e_s"] == pytest.approx(0.014)
    assert s["mean_tpot_s"] == pytest.approx(0.010) and s["mean_itl_s"] == pytest.approx(0.010)
    assert s["p50_itl_s"] == pytest.approx(0.010, rel=HALF_BIN)
    # TTFT 4 ms meets 5 ms; TPOT 10 ms misses 9 ms
    assert (s["slo_attainment_ttft"], s["slo_attainment_tpot"], s["slo_attainment"]) == \
        (1.0, 0.0, 0.0)


def test_seed_reduction_statistics_match_the_fifo_model():
    """One request per instance at 2000 tokens/s decode: every inter-token gap and every
    TPOT is 1/2000 s; busy time equals the FIFO engine's GPU utilisation."""
    wl = config_from_mapping({"output_tokens": {"mean": 3.0, "sigma": 0.8, "min_value": 1}}
                             ).workload.with_rate(18.0)
    req = generate_requests(wl, 300.0, 5)
    window = (30.0, 300.0)
    fifo_cluster = MonolithicCluster(2, 8000.0, 2000.0)
    fifo = summarise(run_requests(req, fifo_cluster, warmup_s=30.0), fifo_cluster, window,
                     (0.5,), {"gpu": 0.0})
    inst = instance(r_p=8000.0, r_d=2000.0, max_num_seqs=1, max_num_batched_tokens=10**9)
    cluster = BatchedColocated(instances=2, instance=inst, routing="shared_queue",
                               first_token="decode")
    times, eng = simulate_batched(req, cluster, window)
    s = summarise_batched(times, eng, window, (0.5,), SLO())
    assert s["utilisation_colocated"] == pytest.approx(fifo["utilisation_gpu"], rel=1e-9)
    assert s["mean_ttft_s"] == pytest.approx(fifo["mean_ttft_s"], rel=1e-9)
    assert s["throughput_rps"] == pytest.approx(fifo["throughput_rps"], rel=1e-9)
    assert s["mean_tpot_s"] == pytest.approx(1 / 2000, rel=1e-9)
    assert s["mean_itl_s"] == pytest.approx(1 / 2000, rel=1e-9)
    for q in ("p50", "p90", "p99"):
        assert s[f"{q}_itl_s"] == pytest.approx(1 / 2000, rel=HALF_BIN)
    assert s["mean_batch_colocated"] == 1.0 and s["stable"] == 1.0


@pytest.mark.parametrize(("rate", "stable"), [(8.0, 1.0), (30.0, 0.0)])
def test_stability_verdict_on_either_side_of_capacity(rate, stable):
    """One instance, one request at a time: capacity 1 / E[S] = 1 / (0.076 + 0.014) s,
    about 11 req/s. 8 req/s (load 0.72) is stable, 30 req/s (2.7x capacity) is not."""
    wl = config_from_mapping({"output_tokens": {"mean": 3.0, "sigma": 0.8, "min_value": 1}}
                             ).workload.with_rate(rate)
    req = generate_requests(wl, 400.0, 9)
    inst = instance(r_p=8000.0, r_d=2000.0, max_num_seqs=1, max_num_batched_tokens=10**9)
    window = (40.0, 400.0)
    times, eng = simulate_batched(req, BatchedColocated(instances=1, instance=inst), window)
    assert summarise_batched(times, eng, window, (0.5,), SLO())["stable"] == stable


def test_histogram_quantiles_read_the_bin_middle():
    from simulation.batched import ITL_BINS, itl_bin

    hist = np.zeros(ITL_BINS, dtype=np.int64)
    for gap, count in ((0.02, 99), (0.5, 1)):
        hist[itl_bin(gap)] += count
    lo, hi = histogram_quantiles(hist, (0.5, 0.999))
    assert lo == pytest.approx(0.02, rel=HALF_BIN)
    assert hi == pytest.approx(0.5, rel=HALF_BIN)


@pytest.mark.parametrize("gap", [1.3e-6, 1e-4, 0.0123, 0.5, 0.75, 1.0, 3.7, 1000.0])
def test_every_gap_falls_in_a_bin_whose_middle_is_within_the_bound(gap):
    from simulation.batched import itl_bin, itl_bin_middle

    assert itl_bin_middle(itl_bin(gap)) == pytest.approx(gap, rel=HALF_BIN)


def test_exact_sum_is_the_exact_rational_sum():
    """Floats of every sign and of exponents from 2^-300 to 2^300, many sharing an
    exponent (the int64 halves) and many not (the scaling): the sum equals Python's exact
    ``Fraction`` sum, and pieces add up to the whole."""
    from fractions import Fraction

    from simulation.batched_metrics import exact_sum

    rng = np.random.default_rng(3)
    x = rng.standard_normal(5000) * 2.0 ** rng.integers(-300, 300, 5000)
    x = np.concatenate([x, np.full(3000, 1.5), -np.full(7, 2.0**52 + 1.0), [0.0]])
    exact = sum((Fraction(v) for v in x.tolist()), Fraction(0))
    assert exact_sum(x) == exact
    assert exact_sum(x[:1234]) + exact_sum(x[1234:]) == exact
    assert exact_sum(np.array([0.0, -0.0])) == 0


def test_every_per_request_statistic_is_its_records():
    """A disaggregated run with preemptions (a small decode KV cache): the summary's
    per-request statistics equal those of the records, computed here with numpy."""
    from spec import BatchedDisaggregated

    cfg = config_from_mapping({"arrival": {"rate_per_s": 30.0},
                               "prompt_tokens": {"mode": "log", "mean": 4.0, "sigma": 0.5},
                               "output_tokens": {"mode": "log", "mean": 3.0, "sigma": 0.8}})
    req = generate_requests(cfg.workload, 60.0, np.random.SeedSequence(4))
    cluster = BatchedDisaggregated(
        prefill=instance(r_p=8000.0, policy="prefill_priority"),
        decode=instance(r_d=900.0, kv=384, block_size=16), link_latency_s=0.002,
        link_bandwidth_bytes_per_s=1e5)
    window = (6.0, 60.0)
    times, eng = simulate_batched(req, cluster, window)
    s = summarise_batched(times, eng, window, (0.5, 0.9), SLO(ttft_s=0.05, tpot_s=0.004))
    m = times.measured
    ttft = (times.first_token_s - times.arrival_s)[m]
    assert m.sum() > 1000 and times.preemptions[m].sum() > 0  # the case has preemptions
    assert s["n_measured"] == m.sum()
    assert s["std_ttft_s"] == pytest.approx(ttft.std(), rel=1e-12)
    assert s["max_ttft_s"] == ttft.max()
    assert s["mean_preemptions"] == pytest.approx(times.preemptions[m].mean(), rel=1e-12)
    transfer = (times.transfer_end_s - times.transfer_start_s)[m]
    assert s["mean_transfer_s"] == pytest.approx(transfer.mean(), rel=1e-12)
    for q in (0.5, 0.9):
        key = f"p{round(q * 100)}_ttft_s"
        assert s[key] == pytest.approx(np.quantile(ttft, q), rel=1e-12), key
    assert s["slo_attainment_ttft"] == pytest.approx(np.mean(ttft <= 0.05), rel=1e-12)
