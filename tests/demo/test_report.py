import json

from flip.demo.report import write_outputs

ARMS = {
    "local": {
        "b": {"auroc": 0.7, "num-examples": 10.0},
        "a": {"auroc": float("nan"), "num-examples": 5.0},
    },
    "federated": {"a": {"auroc": 0.8, "n_test": 5}, "b": {"auroc": 0.81, "n_test": 10}},
    "pooled": {
        "a": {"auroc": 0.85, "num-examples": 5.0},
        "b": {"auroc": 0.82, "num-examples": 10.0},
    },
}
META = {
    "task_name": "t",
    "task_hash": "h",
    "rounds": 2,
    "seed": 0,
    "threshold": 10,
    "sites": ["a", "b"],
}
QUERIES = [
    {
        "name": "q",
        "results": {
            "a": {"count": 12, "suppressed": False, "threshold": 10},
            "b": {"count": None, "suppressed": True, "threshold": 10},
        },
    }
]


def test_outputs_follow_the_documented_shape(tmp_path):
    results = write_outputs(tmp_path, ARMS, QUERIES, [{"auroc": 0.7}, {"auroc": 0.8}], META)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == results
    assert list(on_disk["local"]) == ["a", "b"]
    assert on_disk["local"]["a"] == {"auroc": None, "n_test": 5}
    assert on_disk["federated"]["b"] == {"auroc": 0.81, "n_test": 10}
    report = (tmp_path / "report.md").read_text()
    assert "| q | 12 | <10 |" in report
    assert "| a | 5 | n/a | 0.800 | 0.850 |" in report
    assert (tmp_path / "auroc.png").stat().st_size > 1000
