import numpy as np
import pandas as pd
import pytest

from matswarm.data import DataError, TaskSchema, build_dataset, read_table


def test_perovskite_has_the_papers_147_features(perovskite):
    schema = perovskite.schema
    assert schema.n_features == 147
    assert schema.target == "e_form" and schema.unit == "eV/atom"
    for ident in ("formula", "atom a", "atom b", "composition", "composition_oxid"):
        assert ident in schema.identifiers and ident not in schema.features
    # categorical 'lowest distortion' is dropped by the default rule
    assert "lowest distortion" in schema.identifiers
    assert [o.n for o in perovskite.orgs] == [1231, 1231, 1232] and perovskite.test.n == 322


def test_onehot_rule_freezes_categories(perovskite_dir):
    table = read_table(perovskite_dir / "train_part0.csv")
    schema = TaskSchema.infer(table, "e_form", categorical="onehot")
    onehot = [f for f in schema.features if f.startswith("lowest distortion=")]
    assert len(onehot) == table["lowest distortion"].nunique()
    assert schema.n_features == 147 + len(onehot)
    assert "atom a" in schema.identifiers  # 62 element symbols: an identifier, not a category
    X, _ = schema.encode(table, "t")
    assert np.allclose(X[:, [schema.features.index(f) for f in onehot]].sum(1), 1.0)
    other = table.copy()
    other.loc[0, "lowest distortion"] = "hexagonal-new"
    with pytest.raises(DataError, match=r"lowest distortion.*not in the task schema"):
        schema.encode(other, "org2.csv")


def _table(**overrides):
    df = pd.DataFrame(
        {
            "name": ["a", "b", "c"],
            "x1": [1.0, 2.0, 3.0],
            "x2": [0.5, 0.1, 0.2],
            "y": [1.0, 2.0, 3.0],
        }
    )
    for k, v in overrides.items():
        df[k] = v
    return df


def test_missing_target_names_file_and_column():
    with pytest.raises(DataError) as err:
        build_dataset({"org1": (_table().drop(columns="y"), "lab1.csv")}, "y")
    assert "lab1.csv" in str(err.value) and "'y'" in str(err.value)
    assert err.value.column == "y"


def test_non_numeric_feature_value_is_reported_with_row():
    schema = TaskSchema.infer(_table(), "y")
    bad = _table(x1=["1.0", "oops", "3"])
    with pytest.raises(
        DataError, match=r"lab2.csv, column 'x1': non-numeric value 'oops' at data row 2"
    ):
        schema.encode(bad, "lab2.csv")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_rejected(value):
    schema = TaskSchema.infer(_table(), "y")
    with pytest.raises(DataError, match=r"x2.*missing or infinite"):
        schema.encode(_table(x2=[0.1, value, 0.3]), "lab3.csv")
    with pytest.raises(DataError, match=r"'y'.*missing or infinite"):
        schema.encode(_table(y=[0.1, 0.2, value]), "lab3.csv")


def test_duplicate_columns_in_csv(tmp_path):
    f = tmp_path / "dup.csv"
    f.write_text("x1,x1,y\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"dup.csv, column 'x1': duplicate column name"):
        read_table(f)


def test_org_with_no_rows():
    with pytest.raises(DataError, match=r"empty.csv.*no rows"):
        build_dataset({"org1": (_table(), "a.csv"), "org2": (_table().iloc[:0], "empty.csv")}, "y")


def test_orgs_whose_schemas_disagree():
    other = _table().rename(columns={"x2": "x3"})
    with pytest.raises(DataError) as err:
        build_dataset({"org1": (_table(), "a.csv"), "org2": (other, "b.csv")}, "y")
    msg = str(err.value)
    assert "b.csv" in msg and "a.csv" in msg and "x2" in msg and "x3" in msg


def test_missing_feature_column_against_explicit_schema():
    schema = TaskSchema.infer(_table(), "y")
    with pytest.raises(DataError, match=r"c.csv.*x2"):
        schema.encode(_table().drop(columns="x2"), "c.csv")


def test_reading_parquet_and_errors(tmp_path):
    p = tmp_path / "t.parquet"
    _table().to_parquet(p)
    assert list(read_table(p).columns) == ["name", "x1", "x2", "y"]
    with pytest.raises(DataError, match=r"file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type"):
        read_table(tmp_path / "t.xlsx")


def test_schema_roundtrip_and_digest():
    s = TaskSchema.infer(_table(), "y", unit="eV")
    assert TaskSchema.from_dict(s.to_dict()) == s
    assert s.digest() == TaskSchema.from_dict(s.to_dict()).digest()
