"""Compression codecs, error feedback, byte counting, and the compressed payload in the trust
layer's envelope."""

from __future__ import annotations

import numpy as np
import pytest

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.compression import (
    Compression,
    CompressionError,
    CompressionSpec,
    enable_compression,
    make_codec,
)
from matswarm.experiments.config import ConfigError, ExperimentConfig
from matswarm.models import ModelSpec
from matswarm.protocol import Update
from matswarm.protocol.codec import CodecError, decode_update, encode_update
from matswarm.runtime import build_engine

D = 5000


def vec(seed=0, d=D):
    return np.random.default_rng(seed).normal(0, 0.01, d).astype(np.float32)


@pytest.mark.parametrize("kind", ["q8", "q4"])
def test_quantisation_is_unbiased_and_bounded(kind):
    codec = make_codec(kind, block=128)
    x = vec(d=1001)  # not a multiple of the block or of 2
    levels = 127 if kind == "q8" else 7
    step = np.repeat(np.abs(np.pad(x, (0, 23)).reshape(-1, 128)).max(axis=1) / levels, 128)[:1001]
    draws = np.stack(
        [codec.decode(codec.encode(x, np.random.default_rng(s)), x.size) for s in range(400)]
    )
    assert np.all(np.abs(draws - x) <= step * 1.0001)  # within one quantisation step
    # Mean over draws converges to x (stochastic rounding is unbiased): 5 standard errors.
    se = step / 2 / np.sqrt(400)
    assert np.all(np.abs(draws.mean(axis=0) - x) <= 5 * se + 1e-12)
    # Deterministic rounding would be biased on a constant a third of a step above a level.
    c = np.full(256, 0.01, np.float32)
    c[0] = 0.01 * levels / (levels - 2 / 3)  # sets the block scale
    m = np.mean(
        [
            codec.decode(codec.encode(c, np.random.default_rng(s)), 256)[1:].mean()
            for s in range(400)
        ]
    )
    assert abs(m - 0.01) < 0.02 * 0.01


def test_topk_keeps_the_largest_coordinates():
    x = vec()
    codec = make_codec("topk", fraction=0.05)
    t = codec.encode(x, np.random.default_rng(0))
    y = codec.decode(t, D)
    k = int(np.ceil(0.05 * D))
    assert np.count_nonzero(y) == k
    assert np.abs(x[y != 0]).min() >= np.abs(x[y == 0]).max()
    assert np.array_equal(y[y != 0], x[y != 0])


def test_bad_settings_and_payloads_name_the_field():
    with pytest.raises(CompressionError, match="kind must be one of"):
        make_codec("q2")
    with pytest.raises(CompressionError, match="fraction"):
        make_codec("topk", fraction=1.5)
    q8 = make_codec("q8")
    t = q8.encode(vec(), np.random.default_rng(0))
    with pytest.raises(CompressionError, match="'scale'"):
        q8.decode({"q": t["q"]}, D)
    u = Update("t", 1, "a", vec(), 10)
    [cu] = Compression(q8, ["a"], 0)(1, [u])
    blob = encode_update(cu).replace(b'"kind\\":\\"q8', b'"kind\\":\\"q9')
    with pytest.raises(CodecError, match="compressed update"):
        decode_update(blob)


def test_error_feedback_keeps_the_residual_and_recovers_the_sum():
    """With feedback, what was dropped is sent later: the sum of what arrives over T rounds
    differs from the sum of the true updates only by the last residual. On a persistent
    direction (as consecutive training updates are) that residual stays small, while without
    feedback the small coordinates are never sent."""
    codec = make_codec("topk", fraction=0.1)
    base = vec(seed=99)

    def run(feedback):
        comp = Compression(codec, ["a"], seed=0, feedback=feedback)
        sent, true = np.zeros(D), np.zeros(D)
        for t in range(1, 101):
            x = (base + 0.1 * vec(seed=t)).astype(np.float32)
            true += x
            [u] = comp(t, [Update("t", t, "a", x, 10)])
            sent += u.vector
        return comp, sent, true

    comp, sent, true = run(True)
    assert np.allclose(sent + comp.residuals["a"], true, atol=1e-5)
    _, lost, true_nf = run(False)
    err_fb = np.linalg.norm(sent - true) / np.linalg.norm(true)
    err_nf = np.linalg.norm(lost - true_nf) / np.linalg.norm(true_nf)
    assert err_fb < 0.3 * err_nf


def test_bytes_are_counted_and_the_update_blob_holds_the_compressed_payload():
    x = vec()
    u = Update("t", 1, "a", x, 10)
    raw = len(encode_update(u))
    for kind, max_share in (("q8", 0.27), ("q4", 0.15), ("topk", 0.17)):
        comp = Compression(make_codec(kind, fraction=0.1), ["a"], 0)
        [cu] = comp(1, [u])
        blob = encode_update(cu)
        assert comp.traffic.sent[1] == len(blob) < max_share * raw
        assert comp.traffic.raw[1] == raw
        assert b'"vector"' not in blob[:200]  # no float32 vector in the message
        back = decode_update(blob)
        assert np.array_equal(back.vector, cu.vector) and back.digest() == cu.digest()


def test_engine_run_with_q8_is_close_to_uncompressed(small_synthetic):
    spec = ModelSpec("mlp", hidden=8)
    algo = make_algorithm("fedavg", rounds=4, local_steps=4, lr=1e-2, batch_size=32)
    plain = build_engine(small_synthetic, spec, algo, make_rule("mean"), 0).run()
    eng = build_engine(small_synthetic, spec, algo, make_rule("mean"), 0)
    comp = enable_compression(eng, CompressionSpec("q8"), seed=0)
    run = eng.run()
    assert sorted(comp.traffic.sent) == [1, 2, 3, 4]
    assert comp.traffic.reduction > 0.4  # ~200 parameters: the message metadata weighs more
    rel = np.linalg.norm(run.global_params - plain.global_params) / np.linalg.norm(
        plain.global_params - plain.initial_global
    )
    assert rel < 0.05


def test_config_keys_and_refused_combinations(tmp_path):
    cfg = ExperimentConfig.from_dict(
        {"compression": {"kind": "topk", "fraction": 0.05}, "training": {"methods": ["fedavg"]}}
    )
    assert cfg.compression == CompressionSpec("topk", fraction=0.05)
    cfg = ExperimentConfig.from_dict({"privacy": {"secure_aggregation": True}})
    assert cfg.secure_aggregation is not None and cfg.compression is None
    with pytest.raises(ConfigError, match="needs every individual update"):
        ExperimentConfig.from_dict(
            {"privacy": {"secure_aggregation": True}, "aggregation": {"rule": "median"}}
        )
    with pytest.raises(ConfigError, match="cannot be combined"):
        ExperimentConfig.from_dict(
            {"privacy": {"secure_aggregation": True}, "compression": {"kind": "q8"}}
        )
    with pytest.raises(ConfigError, match=r"\[compression\] kind"):
        ExperimentConfig.from_dict({"compression": {"kind": "zip"}})
    with pytest.raises(ConfigError, match="rounds must be int"):
        ExperimentConfig.from_dict({"training": {"rounds": True}})


def test_mse_vs_bytes_rows_follow_the_results_schema(small_synthetic, tmp_path):
    from matswarm.experiments.compression import q8_verdict, run_compression

    run = run_compression(
        small_synthetic,
        seeds=[0],
        rounds=2,
        settings=[("none", None), ("q8", None), ("topk", 0.1)],
        model=ModelSpec("mlp", hidden=8),
        output=tmp_path,
    )
    assert [r["method"] for r in run.rows] == ["none", "q8", "topk(0.1)"]
    for r in run.rows:
        for key in (
            "model",
            "org",
            "mse_mean",
            "mse_std",
            "rmse_mean",
            "r2_mean",
            "n_seeds",
            "kind",
            "fraction",
            "bytes_per_round",
            "reduction",
            "mse_ratio",
        ):
            assert key in r
        assert r["org"] == "global" and len(r["mse_ratio_per_seed"]) == 1
    none, q8, topk = run.rows
    assert none["reduction"] == 0 and none["mse_ratio"] == 1
    assert none["bytes_per_round"] > q8["bytes_per_round"] > 0
    assert topk["bytes_per_round"] < none["bytes_per_round"]
    assert run.plot is not None and run.plot.stat().st_size > 0
    assert q8_verdict(run.rows).startswith("q8: MSE")
