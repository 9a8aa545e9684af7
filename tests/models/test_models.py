import numpy as np
import pytest
import torch

from matswarm.models import MODELS, ModelSpec


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_flat_roundtrip_and_seeded_init(name):
    spec = ModelSpec(name)
    m = spec.build(147, seed=3)
    x = torch.randn(5, 147)
    assert m(x).shape == (5,)
    u = m.represent(x)
    assert u.ndim == 2 and u.shape[0] == 5
    flat = m.get_flat()
    assert flat.dtype == np.float32 and flat.shape == (m.num_parameters(),)
    assert np.array_equal(spec.build(147, seed=3).get_flat(), flat)
    assert not np.array_equal(spec.build(147, seed=4).get_flat(), flat)
    other = spec.build(147, seed=9)
    other.set_flat(flat)
    assert torch.equal(other(x), m(x))
    with pytest.raises(ValueError, match="parameter vector has shape"):
        other.set_flat(flat[:-1])


def test_paper_mlp_is_three_layers_of_32():
    m = ModelSpec("mlp").build(147)
    linears = [p for p in m.modules() if isinstance(p, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (147, 32),
        (32, 32),
        (32, 1),
    ]


def test_lasso_penalty_is_l1_of_weights():
    m = ModelSpec("lasso", l1=0.5).build(4)
    with torch.no_grad():
        m.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.0, 3.0]]))
    assert float(m.penalty().detach()) == pytest.approx(0.5 * 6.0)


def test_recurrent_models_read_features_as_sequence():
    m = ModelSpec("lstm", chunk=7).build(147)
    assert m.steps == 21 and m.pad == 0
    m2 = ModelSpec("rnn", chunk=10).build(147)
    assert m2.steps == 15 and m2.pad == 3


def test_unknown_model():
    with pytest.raises(ValueError, match="model must be one of"):
        ModelSpec("transformer")
