"""Spec types of the batched serving model: profiles, models, GPUs, instances, clusters.

Expected values come from outside the code under test: public model sizes, DistServe's
coefficients worked by hand, and the GPU datasheet figures."""

import math
import warnings

import pytest

import spec
from spec import Instance, Profile, load_profile
from spec.profiles import load_gpu, load_model

MS = 1e-3


# ------------------------------------------------------------------ models and GPUs

@pytest.mark.parametrize(("name", "billions", "kv_bytes"), [
    # parameter counts from the model cards; KV bytes 2 * layers * kv_heads * head_dim * 2
    pytest.param("llama-3.1-8b", 8.03, 2 * 32 * 8 * 128 * 2, id="llama-3.1-8b"),
    pytest.param("llama-3.1-70b", 70.6, 2 * 80 * 8 * 128 * 2, id="llama-3.1-70b"),
    pytest.param("qwen3-32b", 32.8, 2 * 64 * 8 * 128 * 2, id="qwen3-32b"),
    pytest.param("opt-13b", 12.85, 819_200, id="opt-13b (ANALYTIC_NOTES item 7)"),
    pytest.param("opt-66b", 65.7, 2 * 64 * 9216 * 2, id="opt-66b"),
])
def test_model_sizes_match_the_published_ones(name, billions, kv_bytes):
    m = load_model(name)
    assert m.kv_bytes_per_token == kv_bytes
    # norms and biases are left out: within 0.5 % of the published count
    assert m.num_params / 1e9 == pytest.approx(billions, rel=5e-3)


def test_hf_config_json_is_read(tmp_path):
    """The measured run's config.json (Llama-3.1-8B) reads as the shipped model."""
    import json

    cfg = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
           "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
           "vocab_size": 128256, "torch_dtype": "bfloat16", "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = load_model(str(path))
    assert m.head_dim == 128 and m.gated_mlp
    assert m.num_params == load_model("llama-3.1-8b").num_params


def test_gpu_figures():
    h100 = load_gpu("h100")
    assert h100.peak_flops == 989e12 and h100.memory_bandwidth_bytes_per_s == 3.35e12
    assert h100.memory_bytes == 81559 * 2**20


# ------------------------------------------------------------------ profile forms

def test_distserve_profile_by_hand():
    """distserve/opt-13b_tp1, coefficients (ms) copied from DistServe's JSON."""
    p = load_profile("distserve/opt-13b_tp1")
    a, b, c = 18.10254647486372, 0.1019122572698738, 7.122264314252114e-06
    assert p.prefill_time_s([512]) == pytest.approx((a + b * 512 + c * 512**2) * MS, rel=1e-12)
    assert p.prefill_time_s([100, 300]) == pytest.approx(
        (a + b * 400 + c * (100**2 + 300**2)) * MS, rel=1e-12)
    small = (19.934702624895458, 0.0006269356524350583, 0.03850697740828398)
    large = (7.1661889468253595, 0.0005798000403396046, 0.15831096191764046)
    # 94 decodes use the small-batch set, 95 the large one (DistServe: B < threshold)
    for n, (a2, b2, c2) in ((94, small), (95, large)):
        ctx = [200] * n
        assert p.decode_time_s(ctx) == pytest.approx(
            (a2 + b2 * n * 201 + c2 * n) * MS, rel=1e-12)
    # a mixed step: the prefill formula plus the decode terms (one intercept)
    t = p.step_time_s(n_p=1, s_l=512, s_l2=512**2, n_d=3, s_c=3 * 101)
    assert t == pytest.approx((a + b * 512 + c * 512**2 + small[1] * 303 + small[2] * 3) * MS,
                              rel=1e-12)
    assert p.kv_capacity_tokens == 66144 and p.tp == 1


def test_every_distserve_set_is_shipped():
    names = [n for n in spec.profile_names() if n.startswith("distserve")]
    assert len(names) == 14  # (OPT-13B tp 1, 2, 4 + OPT-66B tp 2, 3, 4, 8) x 2 engines
    for n in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = load_profile(n)
        assert p.form == "distserve" and p.kv_capacity_tokens > 0 and p.source


def test_negative_fitted_coefficient_is_clamped_with_a_warning():
    load_profile.cache_clear()
    with pytest.warns(UserWarning, match="prefill_c = .* is negative .* clamped to 0"):
        p = load_profile("distserve-vllm/opt-66b_tp2")
    assert p.coeffs[2] == 0.0


def test_rates_profile_is_the_seed_model():
    p = Profile.rates(8000.0, 2000.0)
    assert p.prefill_time_s([800]) == pytest.approx(0.1, rel=1e-15)
    assert p.decode_time_s([5000]) == pytest.approx(1 / 2000, rel=1e-15)
    assert load_profile("rates/8000_2000") == Profile.rates(8000.0, 2000.0, name="rates/8000_2000")


def test_mixed_profile_by_hand():
    p = Profile.mixed(overhead=0.002, floor=0.010, alpha=0.001, beta=1e-5, gamma=1e-9,
                      delta=2e-8, epsilon=1e-4)
    # 100 tokens: the floor binds; 2000 tokens: it does not
    t_small = p.step_time_s(n_d=100, s_c=100 * 51)
    assert t_small == pytest.approx(0.002 + 0.010 + 2e-8 * 100 * 50 + 1e-4 * 100, rel=1e-12)
    t_big = p.step_time_s(n_p=1, s_l=2000, s_l2=2000**2)
    assert t_big == pytest.approx(0.002 + 0.001 + 1e-5 * 2000 + 1e-9 * 2000**2, rel=1e-12)



def test_mixed_profile_prefix_and_shared_step_terms_by_hand():
    """The four terms a kernel profile needs: a chunk's attention to its cached prefix
    (zeta per pair, eta per prefix token) and the surcharge of decodes that share a step
    with a prefill chunk (theta per cached token, iota per decode), only in such steps."""
    p = Profile.mixed(0.0, 0.0, 0.0, 0.0, 0.0, delta=2e-8, epsilon=1e-4, zeta=3e-10,
                      eta=5e-7, theta=7e-9, iota=1e-5)
    # one chunk of 256 tokens after a prefix of 1000, and 4 decodes with 99 cached tokens
    t = p.step_time_s(n_p=1, s_l=256, s_l2=256**2, s_lx=256 * 1000, s_x=1000, n_d=4,
                      s_c=4 * 100)
    shared = 7e-9 * 4 * 99 + 1e-5 * 4
    assert t == pytest.approx(2e-8 * 396 + 1e-4 * 4 + 3e-10 * 256_000 + 5e-7 * 1000 + shared,
                              rel=1e-12)
    # the same decodes alone pay no surcharge
    assert p.step_time_s(n_d=4, s_c=400) == pytest.approx(2e-8 * 396 + 1e-4 * 4, rel=1e-12)
    # a YAML file without the new terms is DESIGN.md's seven-term form
    assert Profile.mixed(1, 2, 3, 4, 5, 6, 7).coeffs[7:] == (0.0, 0.0, 0.0, 0.0)

def test_roofline_decode_is_the_weights_over_bandwidth():
    """One decode of Llama-3.1-8B on one H100 reads every weight once: 2 bytes x 8.03e9
    parameters at 80 % of 3.35 TB/s, plus the 3 ms overhead of roofline.yaml."""
    p = load_profile("roofline/llama-3.1-8b_h100_tp1")
    params = 128256 * 4096 * 2 + 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    expected = 0.003 + (2 * params + 131072 * 1) / (0.8 * 3.35e12)
    assert p.decode_time_s([0]) == pytest.approx(expected, rel=1e-9)
    # KV capacity: 90 % of 81,559 MiB less 2 GiB reserve less the weights, per token
    kv = math.floor((81559 * 2**20 * 0.9 - 2**31 - 2 * params) / 131072)
    assert p.kv_capacity_tokens == kv


def test_roofline_agrees_roughly_with_distserves_measured_fit():
    """Independent evidence that the roofline is sane: for OPT-13B on one A100 it lands
    within 25 % of DistServe's fit to measurements (prefill 1024 tokens, 32 decodes)."""
    fit = load_profile("distserve/opt-13b_tp1")
    roof = load_profile("roofline/opt-13b_a100-80gb_tp1")
    assert roof.prefill_time_s([1024]) == pytest.approx(fit.prefill_time_s([1024]), rel=0.25)
    assert roof.decode_time_s([1024] * 32) == pytest.approx(fit.decode_time_s([1024] * 32),
                                                           rel=0.25)


def test_roofline_that_cannot_hold_the_weights_is_refused():
    with pytest.raises(ValueError, match=r"weights \(131.4 GiB\) leave no room .* larger tp"):
        load_profile("roofline/llama-3.1-70b_h100_tp1")
    assert load_profile("roofline/llama-3.1-70b_h100_tp2").tp == 2


def test_profile_from_a_yaml_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("form: mixed\noverhead: 0.001\nfloor: 0.005\nalpha: 0.0\nbeta: 1.0e-5\n"
                 "gamma: 0.0\ndelta: 0.0\nepsilon: 0.0\ntp: 2\nkv_capacity_tokens: 100000\n")
    p = load_profile(str(f))
    assert p.tp == 2 and p.step_time_s(n_d=1, s_c=1) == pytest.approx(0.006)


@pytest.mark.parametrize(("name", "message"), [
    ("nope", "profile = 'nope': unknown"),
    ("roofline/gpt-5_h100_tp1", "model = 'gpt-5': unknown"),
    ("roofline/llama-3.1-8b_b200_tp1", "gpu = 'b200': unknown"),
    ("rates/0_2000", r"prefill_tokens_per_s = 0.0: must be in \[0.001, 1e\+12\]"),
    ("missing.yaml", "no such file"),
])
def test_bad_profile_names(name, message):
    with pytest.raises(ValueError, match=message):
        load_profile(name)


# ------------------------------------------------------------------ instances, clusters

def test_instance_kv_blocks_and_errors():
    inst = Instance(profile="distserve/opt-13b_tp1")
    assert inst.kv_blocks == 66144 // 16 and inst.kv_tokens == 4134 * 16
    assert inst.blocks_for(16) == 1 and inst.blocks_for(17) == 2
    with pytest.raises(ValueError, match="kv_capacity_tokens = 8: must be >= block_size"):
        Instance(profile="distserve/opt-13b_tp1", kv_capacity_tokens=8)
    with pytest.raises(ValueError, match="policy = 'fifo': must be one of chunked"):
        Instance(profile="distserve/opt-13b_tp1", policy="fifo")
    with pytest.raises(ValueError, match="kv_capacity_tokens is missing"):
        Instance(profile="rates/8000_2000")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"batched_mono": {"instances": 0}}, "batched_mono.instances = 0"),
    ({"batched_mono": {"instance": {"max_num_seqs": 0}}}, "batched_mono.instance.max_num_seqs"),
    ({"mode": "disagg", "batched_disagg": {"link_bandwidth_bytes_per_s": -1}},
     "batched_disagg.link_bandwidth_bytes_per_s = -1"),
    ({"mode": "disagg", "batched_disagg": {"decode": {"profile": "x"}}},
     "batched_disagg.decode.profile = 'x': unknown"),
    ({"slo": {"attainment": 1.5}}, "slo.attainment = 1.5"),
    ({"arrival": {"process": "gamma", "cv": 0}}, "arrival.cv = 0"),
    ({"batched_mono": {"routing": "random"}}, "batched_mono.routing = 'random'"),
])
def test_batched_settings_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        spec.config_from_mapping({"serving": "batched", **overrides})


def test_batched_defaults_are_distserves_opt13b_setting():
    cfg = spec.config_from_mapping({"serving": "batched", "mode": "both"})
    mono, dis = cfg.clusters()
    assert mono.total_gpus == dis.total_gpus == 2  # colocated 2 GPUs vs 1 prefill + 1 decode
    assert dis.transfer_s(512) == pytest.approx(512 * 819_200 / 25e9)  # 16.8 ms (notes item 7)
    assert spec.config_from_mapping(spec.config_to_mapping(cfg)) == cfg


def test_mmpp_keeps_the_mean_rate():
    a = spec.ArrivalProcess(process="mmpp", burst_ratio=5.0, burst_fraction=0.25,
                            burst_cycle_s=40.0)
    calm, burst, up, down = a.mmpp_rates(3.0)
    assert 0.25 * burst + 0.75 * calm == pytest.approx(3.0)
    assert burst == pytest.approx(5 * calm)
    assert 1 / down == pytest.approx(10.0) and 1 / up == pytest.approx(30.0)


def test_closed_loop_needs_the_batched_model():
    with pytest.raises(ValueError, match="arrival.process = 'closed': the fifo serving model"):
        spec.config_from_mapping({"arrival": {"process": "closed"}})


def test_step_overhead_is_added_to_every_step_once():
    """Added to the intercepts, so every step (prefill, decode, mixed; both DistServe
    decode sets) is longer by exactly the overhead."""
    over = 0.0015
    for p in (Profile.mixed(0.001, 0.012, 0.008, 3e-5, 5e-9, 9e-8, 5e-6, 1e-9, 5e-7, 8e-8, 1e-5),
              load_profile("distserve/opt-13b_tp1"),
              load_profile("roofline/llama-3.1-8b_h100_tp1")):
        q = p.with_step_overhead(over)
        for sums in ({"n_p": 1, "s_l": 512, "s_l2": 512**2}, {"n_d": 3, "s_c": 300},
                     {"n_d": 200, "s_c": 20_000},
                     {"n_p": 1, "s_l": 64, "s_l2": 64**2, "s_lx": 6400, "s_x": 100, "n_d": 5,
                      "s_c": 500}):
            assert q.step_time_s(**sums) - p.step_time_s(**sums) == pytest.approx(over,
                                                                                 rel=1e-9)
    with pytest.raises(ValueError, match="no step intercept"):
        Profile.rates(1000, 100).with_step_overhead(0.001)
    with pytest.raises(ValueError, match="step overhead .* must be >= 0"):
        load_profile("distserve/opt-13b_tp1").with_step_overhead(-1e-3)
