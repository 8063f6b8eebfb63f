"""CSV modelling tables and federated preprocessing: the same encoding as if rows were pooled."""

import gzip

import numpy as np
import pytest

from flip.data.features.csvfile import (
    DatasetError,
    SiteTable,
    Target,
    column_kind,
    looks_like_id,
    site_stats,
)
from flip.fl.preprocessing import combine
from flip.fl.strategies import NAMES, make_strategy


def test_column_kinds_and_ids():
    assert column_kind(["1", "2.5", "?", ""]) == "numeric"
    assert column_kind(["TRUE", "false", "NA", "yes"]) == "numeric"
    assert column_kind(["M", "F", ""]) == "categorical"
    assert looks_like_id("patient_id", [str(i) for i in range(20)])
    assert looks_like_id("code", [f"X{i}" for i in range(20)])
    assert not looks_like_id("age", [str(i) for i in range(20)])


def test_target_expressions():
    assert Target.parse("num", "num>0").labels(["0", "2", "?", "1"], "s") == [0.0, 1.0, None, 1.0]
    assert Target.parse("num", ">=2").labels(["1", "2"], "s") == [0.0, 1.0]
    assert Target.parse("dx", "yes").labels(["Yes", "no"], "s") == [1.0, 0.0]
    assert Target.parse("dx", None).labels(["TRUE", "FALSE", ""], "s") == [1.0, 0.0, None]
    with pytest.raises(DatasetError, match="--positive"):
        Target.parse("num", None).labels(["0", "1", "2"], "s")


def test_federated_statistics_equal_pooled_statistics():
    rng = np.random.default_rng(0)
    columns_a = {
        "x": [f"{v:.3f}" for v in rng.normal(5, 2, 50)] + ["?"],
        "c": ["a", "b"] * 25 + [""],
    }
    columns_b = {"x": [f"{v:.3f}" for v in rng.normal(9, 1, 30)], "c": ["b", "d"] * 15}
    a, b = SiteTable("a", columns_a), SiteTable("b", columns_b)
    kinds = {"x": "numeric", "c": "categorical"}
    encoding = combine(
        [site_stats(a, list(range(a.n_rows)), kinds), site_stats(b, list(range(b.n_rows)), kinds)],
        kinds,
    )
    values = [float(v) for v in columns_a["x"][:-1] + columns_b["x"]]
    mean, std = encoding.numeric["x"]
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values))
    assert encoding.categories["c"] == ("a", "b", "d")
    assert encoding.indicators == ("x", "c")
    x = encoding.encode(columns_a, [0, 50])
    assert x.shape == (2, len(encoding.names))
    assert x[1, 0] == 0.0 and x[1, 1] == 1.0, "a missing number is the mean, with its indicator set"


def test_every_strategy_name_builds_a_flower_strategy():
    for name in NAMES:
        strategy = make_strategy(name, 4, 0.05)
        assert strategy.__class__.__module__.startswith("flwr.serverapp.strategy")
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("fedmagic", 3, 0.1)


def test_a_site_table_file_is_decoded_as_every_source_decodes_text(tmp_path):
    path = tmp_path / "site.csv"
    path.write_bytes(gzip.compress("age;smoker\n61;yes\n54;no\n".encode("utf-16")))
    assert SiteTable.read("a", path).columns == {"age": ["61", "54"], "smoker": ["yes", "no"]}
    path.write_bytes("name|age\nJos\xe9|61\n".encode("cp1252"))
    assert SiteTable.read("a", path).columns == {"name": ["Jos\xe9"], "age": ["61"]}
