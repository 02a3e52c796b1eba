"""Hand-computable cases: the simulator must reproduce them to float precision."""

import json

import numpy as np
import pytest

from simulation import Requests, load_trace, run_requests, simulate_trace
from spec import DisaggregatedCluster, MonolithicCluster

MONO = MonolithicCluster(num_gpus=1, prefill_tokens_per_s=1000.0, decode_tokens_per_s=100.0)
DISAGG = DisaggregatedCluster(prefill_gpus=1, decode_gpus=1, prefill_tokens_per_s=1000.0,
                              decode_tokens_per_s=100.0)


@pytest.fixture(params=["simpy", "fast"])
def engine(request):
    """Every hand-computed case is checked on both engines."""
    return request.param


def _one(arrivals, prompts, outputs):
    return Requests(np.array(arrivals, float), np.array(prompts, float),
                    np.array(outputs, float))


def test_single_request_mono(engine):
    rec = run_requests(_one([1.0], [500], [20]), MONO, engine=engine)
    # TTFT = P / r_p + 1 / r_d = 0.5 + 0.01
    assert rec.ttft_s[0] == pytest.approx(0.51, rel=1e-12)
    assert rec.prefill_wait_s[0] == 0.0 and rec.decode_wait_s[0] == 0.0
    assert rec.e2e_s[0] == pytest.approx(0.5 + 0.2, rel=1e-12)


def test_single_request_disagg_with_transfer(engine):
    cluster = DisaggregatedCluster(1, 1, 1000.0, 100.0, kv_transfer_s_per_token=1e-4)
    rec = run_requests(_one([1.0], [500], [20]), cluster, engine=engine)
    # TTFT = P / r_p + transfer + 1 / r_d = 0.5 + 0.05 + 0.01
    assert rec.ttft_s[0] == pytest.approx(0.56, rel=1e-12)
    assert rec.transfer_s[0] == pytest.approx(0.05, rel=1e-12)


def test_two_overlapping_requests_wait_full_service_mono(engine):
    # first holds the GPU for 0.5 + 0.2 = 0.7 s from t=0; second arrives at 0.1
    rec = run_requests(_one([0.0, 0.1], [500, 300], [20, 10]), MONO, engine=engine)
    assert rec.prefill_wait_s[1] == pytest.approx(0.6, rel=1e-12)
    assert rec.ttft_s[1] == pytest.approx(0.6 + 0.3 + 0.01, rel=1e-12)


def test_decode_wait_adds_to_ttft_disagg(engine):
    # prefills: #0 on [0, 0.5), #1 on [0.5, 0.8); decode of #0 holds the decode GPU on
    # [0.5, 0.7 + 0.5 = 1.2)? no: 20 tokens / 100 = 0.2 s, so [0.5, 0.7); #1 is ready at 0.8.
    # Make #0's decode long (100 tokens: [0.5, 1.5)) so #1 waits 0.7 s for decode.
    rec = run_requests(_one([0.0, 0.1], [500, 300], [100, 10]), DISAGG, engine=engine)
    assert rec.prefill_wait_s[1] == pytest.approx(0.4, rel=1e-12)
    assert rec.decode_wait_s[1] == pytest.approx(1.5 - 0.8, rel=1e-12)
    assert rec.ttft_s[1] == pytest.approx(0.4 + 0.3 + 0.7 + 0.01, rel=1e-12)
    # and #0 never waits: its TTFT is its prefill plus one decode token
    assert rec.ttft_s[0] == pytest.approx(0.51, rel=1e-12)


def test_fifo_order_with_two_servers(engine):
    cluster = MonolithicCluster(2, 1000.0, 100.0)
    # three at t=0 with 1 s, 2 s, 1 s holds: the third takes the first GPU freed (t=1)
    rec = run_requests(_one([0.0, 0.0, 0.0], [1000, 2000, 1000], [1e-9, 1e-9, 1e-9]), cluster,
                       engine=engine)
    assert rec.prefill_wait_s.tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-9)


def test_trace_file_in_distserve_schema(tmp_path, engine):
    trace = [{"start_time": 0.0, "prompt_len": 500, "output_len": 20},
             {"start_time": 0.1, "prompt_len": 300, "output_len": 10}]
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace))
    res = simulate_trace(path, MONO, engine=engine)
    rec = res.records[0]
    assert rec.ttft_s.tolist() == pytest.approx([0.51, 0.6 + 0.3 + 0.01], rel=1e-12)
    assert res.summary["n_measured"] == 2


def test_trace_csv_equals_arrays(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,500,20\n0.1,300,10\n")
    a = load_trace(path)
    b = _one([0.0, 0.1], [500, 300], [20, 10])
    assert np.array_equal(a.arrival_s, b.arrival_s) and np.array_equal(a.prompt_tokens,
                                                                       b.prompt_tokens)


@pytest.mark.parametrize(("arrivals", "prompts", "outputs", "message"), [
    pytest.param([0.0, -1.0], [1, 1], [1, 1], "arrival_s[1] = -1.0", id="negative arrival"),
    pytest.param([1.0, 0.5], [1, 1], [1, 1], "arrival_s[1] = 0.5: must be >= arrival_s[0]",
                 id="unsorted"),
    pytest.param([0.0, 1.0], [1, 0], [1, 1], "prompt_tokens[1] = 0.0: must be a finite number > 0",
                 id="zero prompt"),
    pytest.param([0.0, 1.0], [1, 1], [1, float("nan")], "output_tokens[1] = nan",
                 id="NaN output"),
    pytest.param([0.0], [1, 1], [1, 1], "must have the same length", id="ragged"),
])
def test_bad_trace_is_refused(arrivals, prompts, outputs, message):
    with pytest.raises(ValueError) as err:
        _one(arrivals, prompts, outputs)
    assert message in str(err.value)


def test_utilisation_and_queue_length_by_hand(engine):
    # one GPU: busy [0, 0.7) and [0.7, 1.0); #1 waits [0.1, 0.7); window [0, 2)
    res = simulate_trace(_one([0.0, 0.1, 2.0], [500, 200, 1], [20, 10, 1]), MONO,
                         engine=engine)
    s = res.summary
    assert s["utilisation_gpu"] == pytest.approx((0.7 + 0.3) / 2.0, rel=1e-12)
    assert s["mean_queue_len_gpu"] == pytest.approx(0.6 / 2.0, rel=1e-12)
    assert s["throughput_rps"] == pytest.approx(2 / 2.0)


def test_records_select_and_dataset_keep_every_column_with_units(engine):
    """Three requests by hand: ``select`` keeps the rows a mask names in every column, and
    the dataset carries each column with its units and meaning."""
    from simulation.metrics import COLUMNS

    rec = run_requests(_one([0.0, 0.1, 5.0], [500, 300, 100], [20, 10, 5]), MONO,
                       engine=engine, warmup_s=0.05)
    assert rec.measured.tolist() == [False, True, True]
    sub = rec.select(rec.measured)
    assert len(sub) == 2
    for name in (*COLUMNS, "prefill_start_s", "decode_start_s", "measured"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(rec, name)[1:])
    # second request: waits 0.7 - 0.1 = 0.6 s, then 0.3 + 0.01
    assert sub.ttft_s[0] == pytest.approx(0.6 + 0.3 + 0.01, rel=1e-12)
    ds = rec.to_xarray()
    assert list(ds.data_vars) == [*COLUMNS, "measured"]
    for name, (units, long_name) in COLUMNS.items():
        assert ds[name].dims == ("request",)
        assert ds[name].attrs == {"units": units, "long_name": long_name}
        np.testing.assert_array_equal(ds[name].values, getattr(rec, name))
    assert ds["measured"].values.tolist() == [False, True, True]
    assert ds["measured"].attrs == {"long_name": "arrived after warm-up"}
