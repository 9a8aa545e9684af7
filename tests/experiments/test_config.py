import pytest

from matswarm.experiments.config import ConfigError, ExperimentConfig, keys_help


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_full_config_parses(tmp_path):
    cfg = ExperimentConfig.from_toml(
        write(
            tmp_path,
            """
[data]
source = "synthetic"
rows = 300
features = 8
[split]
kind = "dirichlet"
orgs = 4
alpha = 0.3
[model]
name = "lasso"
l1 = 0.01
[training]
methods = ["solo", "fedprox", "matswarm"]
rounds = 5
mu = 0.1
gamma = 1.0
[aggregation]
rule = "trimmed-mean"
f = 1
[run]
seeds = [1, 2]
jobs = 1
""",
        )
    )
    assert cfg.split.kind == "dirichlet" and cfg.split.orgs == 4
    assert cfg.algorithm("fedprox").mu == 0.1 and cfg.algorithm("matswarm").gamma == 1.0
    assert cfg.seeds == [1, 2] and cfg.make_rule().describe() == "trimmed-mean(f=1)"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[training]\nround = 3\n", "unknown key 'round' in \\[training\\]"),
        ("[trainig]\nrounds = 3\n", "unknown section \\[trainig\\]"),
        ("[training]\nrounds = 'many'\n", "rounds must be int"),
        ("[training]\nlr = -1.0\n", "lr must be > 0"),
        ("[model]\nname = 'gpt'\n", "model must be one of"),
        ("[aggregation]\nrule = 'avg'\n", "unknown aggregation rule"),
        ("[split]\nkind = 'quantity'\n", "needs ratios"),
        ("[training]\nmethods = ['fedavg']\ngamma = 1.0\n", "gamma applies to matswarm"),
        ("[training]\nmethods = ['fedsgd']\n", "unknown algorithm"),
        ("[run]\nseeds = []\n", "at least one seed"),
        ("not toml =", "not valid TOML"),
    ],
)
def test_bad_keys_and_values_are_clear_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        ExperimentConfig.from_toml(write(tmp_path, text))
    assert "c.toml" in str(err.value)


def test_quantity_split_sets_k_from_ratios(tmp_path):
    cfg = ExperimentConfig.from_toml(
        write(tmp_path, "[split]\nkind='quantity'\nratios=[1,10,15]\n")
    )
    assert cfg.split.orgs == 3


def test_help_documents_every_key():
    text = keys_help()
    for key in (
        "source",
        "kind",
        "alpha",
        "ratios",
        "rounds",
        "local_steps",
        "lr",
        "rule",
        "seeds",
        "gamma",
        "lam",
        "mu",
    ):
        assert f"  {key} = " in text
