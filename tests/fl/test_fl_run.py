"""`flip fl run`: the public experiment interface on messy multi-hospital CSV files."""

import json
import subprocess
import sys

import pytest

from flip.fl.privacy import PrivacySpec
from tests.fl.in_process import flip_here
from tests.fl.messy import write_sites


def flip(*args):
    return subprocess.run(
        [sys.executable, "-m", "flip", *args], capture_output=True, text=True, timeout=600
    )


def site_args(sites):
    return [a for name, path in sites.items() for a in ("--site", f"{name}={path}")]


def fl_run(sites, *args):
    return flip("fl", "run", *site_args(sites), *args)


def refused(sites, *args, status=1):
    """`flip fl run` with `args`, in this process, ends with exit `status`, no traceback; its
    stderr."""
    result = flip_here("fl", "run", *site_args(sites), *args)
    assert result.returncode == status, result.stderr[-2000:]
    return result.stderr


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    return write_sites(tmp_path_factory.mktemp("messy"))


@pytest.mark.slow
def test_json_contract_and_federation_reaches_pooled(sites, tmp_path):
    registry = tmp_path / "registry"
    result = fl_run(
        sites,
        "--target",
        "num",
        "--positive",
        "num>0",
        "--task",
        "tabular-logreg",
        "--strategy",
        "fedavg",
        "--rounds",
        "10",
        "--compare",
        "--json",
        "--save",
        "mace-risk",
        "--registry",
        str(registry),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 1
    data = json.loads(result.stdout)
    arms = {"federated", "best_round", "local", "pooled"}
    assert set(data) == {"strategy", "rounds", "selection", *arms}
    assert data["strategy"] == "fedavg" and data["rounds"] == 10
    assert data["selection"]["chosen_on"] == "validation"
    intervals = {"accuracy_ci", "auroc_ci"}
    for arm in arms:
        assert set(data[arm]) == {"per_site", "overall"}
        assert set(data[arm]["per_site"]) == set(sites)
        for metrics in data[arm]["per_site"].values():
            assert set(metrics) == {"accuracy", "auroc", "n_test", *intervals}
        overall = data[arm]["overall"]
        assert set(overall) == {"accuracy", "auroc", *intervals}
        assert overall["auroc_ci"][0] <= overall["auroc"] <= overall["auroc_ci"][1]
    assert data["federated"]["overall"]["accuracy"] >= data["pooled"]["overall"]["accuracy"] - 0.02
    assert data["federated"]["overall"]["auroc"] > 0.75
    assert "ignoring id-like columns: patient_id" not in result.stdout
    listed = flip_here("models", "list", "--registry", str(registry), "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["id"]: m for m in json.loads(listed.stdout)}
    (model,) = [m for m in models.values() if not m["id"].startswith("mace-risk-best-")]
    (best,) = [m for m in models.values() if m["id"].startswith("mace-risk-best-")]
    assert model["id"].startswith("mace-risk-") and model["strategy"] == "fedavg"
    lineage = json.loads((registry / model["id"] / "lineage.json").read_text())
    aurocs = [r["auroc"] for r in lineage["round_metrics"]]  # on the validation splits
    assert best["final_model"] == model["id"] and aurocs[best["best_round"] - 1] == max(aurocs)
    assert best["best_round"] == data["selection"]["best_round"]
    assert data["selection"]["validation_auroc"] == max(aurocs)
    exported = flip_here(
        *["models", "export", model["id"], "--registry", str(registry)],
        *["--format", "onnx", "--out", str(tmp_path / "m.onnx")],
    )
    assert exported.returncode == 0 and (tmp_path / "m.onnx").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fedprox", "fedadam", "fedmedian"])
def test_other_strategies_train(sites, strategy):
    result = fl_run(
        sites,
        "--target",
        "num",
        "--positive",
        "num>0",
        "--strategy",
        strategy,
        "--rounds",
        "4",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert {"strategy", "rounds", "federated"} <= set(data)
    assert set(data) - {"strategy", "rounds", "federated"} <= {"selection", "best_round"}
    assert data["federated"]["overall"]["auroc"] > 0.7
    if "selection" in data:  # the best round is chosen on validation rows, scored on test
        assert data["selection"]["chosen_on"] == "validation"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "no column 'nope'"),
        (["--target", "num"], "--positive"),
        (["--target", "num", "--positive", "num>0", "--strategy", "magic"], "unknown --strategy"),
        (["--target", "num", "--positive", "num>0", "--drop", "ghost"], "--drop names columns"),
        (
            ["--target", "num", "--positive", "num>0", "--secagg", "--strategy", "fedmedian"],
            "--secagg sums weight updates",
        ),
        (
            ["--target", "num", "--positive", "num>0", "--secagg", "--dp", "server"],
            "no --dp or --checkpoint",
        ),
        (
            ["--target", "num", "--positive", "num>0", "--dp", "server", "--strategy", "fedadam"],
            "fedadam releases more than that",
        ),
    ],
)
def test_bad_options_fail_in_one_line(sites, args, message):
    stderr = refused(sites, *args)
    assert message in stderr and "Traceback" not in stderr


def test_adaptive_clipping_is_a_usage_error_without_dp_or_with_a_quantile_of_one(sites):
    assert "give --dp too" in refused(sites, "--target", "num", "--adaptive-clip", status=2)
    args = ["--target", "num", "--dp", "server", "--adaptive-clip", "--clip-quantile", "1"]
    assert "less than 1" in refused(sites, *args, status=2)
    local = ["--target", "num", "--dp", "client", "--adaptive-clip"]
    assert "server-side only" in refused(sites, *local, status=2)


@pytest.mark.slow
@pytest.mark.parametrize(("side", "clipping"), [("server", "fixed"), ("client", "fixed")])
def test_differential_privacy_reports_its_budget(sites, side, clipping):
    """Server-side adaptive clipping's budget: see the killed-run test's unbroken run."""
    result = fl_run(
        sites,
        "--target",
        "num",
        "--positive",
        "num>0",
        "--rounds",
        "3",
        "--dp",
        side,
        "--noise-multiplier",
        "0.8",
        "--clip",
        "5",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["privacy"]["clipping"] == f"{side}-side {clipping}"
    expected = PrivacySpec(noise_multiplier=0.8, clipping_norm=5.0).epsilon(3)
    assert data["privacy"]["epsilon"] == pytest.approx(expected, abs=1e-3)
    assert data["privacy"]["rounds"] == 3
    assert isinstance(data["federated"]["overall"]["auroc"], float)


@pytest.mark.slow
def test_record_level_dp_sgd_reports_each_sites_epsilon(sites):
    small = {name: sites[name] for name in ("northbridge", "riverside")}  # DP-SGD is slow
    args = ["--target", "num", "--positive", "num>0", "--rounds", "1", "--local-epochs", "1"]
    result = fl_run(small, *args, "--dp", "record", "--noise-multiplier", "1.2", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    privacy = json.loads(result.stdout)["privacy"]
    assert "Opacus" in privacy["accountant"] and "DP-SGD" in privacy["mechanism"]
    by_site = privacy["epsilon_by_site"]
    assert set(by_site) == set(small) and privacy["epsilon"] == max(by_site.values())
    assert all(0 < epsilon < 10 for epsilon in by_site.values())


@pytest.mark.slow
def test_a_run_killed_mid_way_resumes_from_its_last_round_checkpoint(sites, tmp_path):
    import os
    import signal
    import time

    import torch

    folder = tmp_path / "run"
    run_log = (tmp_path / "run.log").open("w")
    common = ["--target", "num", "--positive", "num>0", "--rounds", "6", "--json"]
    # Server-side state the resume must restore: central DP's noise stream and adaptive clipping
    # norm. (FedAdam's moments are refused under central DP, which accounts only fedavg/fedprox.)
    common += ["--local-epochs", "20", "--strategy", "fedavg"]
    common += ["--dp", "server", "--noise-multiplier", "0.3", "--clip", "0.5", "--adaptive-clip"]
    common += ["--clip-quantile", "0.8"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flip",
            "fl",
            "run",
            *site_args(sites),
            *common,
            "--checkpoint",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=run_log,
        start_new_session=True,
    )
    checkpoint = folder / "checkpoint.pt"
    deadline = time.monotonic() + 600  # start-up alone took 3 minutes on a loaded machine
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["round"] >= 2:
            break
        time.sleep(0.2)
    log = (tmp_path / "run.log").read_text()[-2000:]
    assert process.poll() is None, f"the run ended ({process.returncode}) before the kill: {log}"
    os.killpg(process.pid, signal.SIGKILL)  # the server and everything it started
    process.wait()
    run_log.close()
    stopped_at = torch.load(checkpoint, weights_only=True)["round"]
    assert 2 <= stopped_at < 6, "killed mid-run"

    resumed = subprocess.run(
        [sys.executable, "-m", "flip", "fl", "resume", str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["rounds"] == 6
    assert torch.load(checkpoint, weights_only=True)["round"] == 6
    assert len(torch.load(checkpoint, weights_only=True)["rounds"]) == 6
    unbroken = tmp_path / "unbroken"
    whole = fl_run(sites, *common, "--checkpoint", str(unbroken))
    assert whole.returncode == 0, whole.stderr[-2000:]
    resumed_weights = torch.load(checkpoint, weights_only=True)["state_dict"]
    whole_weights = torch.load(unbroken / "checkpoint.pt", weights_only=True)["state_dict"]
    diff = max(float((whole_weights[k] - v).abs().max()) for k, v in resumed_weights.items())
    print(f"killed after round {stopped_at}, resumed: max abs weight difference {diff:.2e}")
    assert diff < 1e-5
    expected = json.loads(whole.stdout)["federated"]["overall"]
    assert result["federated"]["overall"]["auroc"] == pytest.approx(expected["auroc"], abs=1e-6)
    # the unbroken run reports the budget of server-side DP with adaptive clipping
    privacy = json.loads(whole.stdout)["privacy"]
    assert privacy["clipping"] == "server-side adaptive" and privacy["rounds"] == 6
    assert privacy["target_quantile"] == 0.8
    spec = PrivacySpec(noise_multiplier=0.3, clipping_norm=0.5, adaptive=True)
    assert privacy["epsilon"] == pytest.approx(spec.epsilon(6), abs=1e-3)

    other = refused(sites, *common, "--checkpoint", str(folder), "--seed", "3")
    assert "another run" in other


@pytest.mark.slow
def test_xgboost_federates_by_bagging_and_nears_the_pooled_model(sites, tmp_path):
    args = ["--target", "num", "--positive", "num>0", "--task", "tabular-xgboost"]
    registry = str(tmp_path / "registry")
    result = fl_run(
        sites,
        *args,
        *["--rounds", "8", "--local-epochs", "2", "--compare", "--json"],
        *["--save", "trees", "--registry", registry],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    model_id = next(line for line in result.stderr.splitlines() if "registered model" in line)
    model_id = model_id.split("registered model ", 1)[1].split()[0]
    path = next(iter(sites.values()))
    check = flip_here(
        *["site", "evaluate", model_id, "--data", str(path), "--target", "num"],
        *["--positive", "num>0", "--registry", registry, "--json"],
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["auroc"] > 0.75
    exported = tmp_path / "trees.json"
    export = flip_here(
        *["models", "export", model_id, "--out", str(exported), "--format", "xgboost"],
        *["--registry", registry],
    )
    assert export.returncode == 0, export.stderr
    import xgboost

    assert xgboost.Booster(model_file=str(exported)).num_boosted_rounds() >= 8, "trees per round"
    assert out["strategy"] == "fedxgb_bagging"
    federated, pooled = out["federated"]["overall"], out["pooled"]["overall"]
    assert federated["auroc"] > 0.75
    assert federated["auroc"] >= pooled["auroc"] - 0.05
    assert "fedxgb_bagging" in refused(sites, *args, "--strategy", "fedavg")
    assert "does not apply" in refused(sites, *args, "--dp", "server")


@pytest.mark.slow
def test_personalisation_is_reported_apart_from_the_federated_model(sites):
    result = fl_run(
        sites,
        *["--target", "num", "--positive", "num>0", "--rounds", "3"],
        *["--personalise", "5", "--json"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    personalised, federated = out["personalised"], out["federated"]
    assert set(personalised["per_site"]) == set(federated["per_site"])
    assert personalised["per_site"] != federated["per_site"], "each site fine-tuned its copy"
    for metrics in personalised["per_site"].values():
        assert 0 <= metrics["accuracy"] <= 1 and metrics["n_test"] > 0
    assert "--personalise" in refused(
        sites, "--target", "num", "--positive", "num>0", "--personalise", "-1"
    )


@pytest.mark.slow
def test_secure_aggregation_keeps_the_json_contract_and_learns(sites):
    args = ("--target", "num", "--positive", "num>0", "--rounds", "3", "--secagg", "--json")
    result = fl_run(sites, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["strategy"] == "fedavg" and set(data["federated"]["per_site"]) == set(sites)
    assert data["federated"]["overall"]["auroc"] > 0.7


@pytest.mark.slow
def test_xgboost_federates_cyclically_one_site_a_round_on_the_whole_model(sites):
    args = ["--target", "num", "--positive", "num>0", "--task", "tabular-xgboost"]
    result = fl_run(
        sites,
        *args,
        *["--strategy", "fedxgb_cyclic", "--rounds", "3", "--local-epochs", "2", "--json"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["strategy"] == "fedxgb_cyclic" and out["federated"]["overall"]["auroc"] > 0.75


@pytest.mark.slow
def test_fedbn_reports_each_sites_own_model_beside_the_global_and_local_ones(sites):
    result = fl_run(
        sites,
        *["--target", "num", "--positive", "num>0", "--rounds", "3", "--local-epochs", "2"],
        *["--personal", "fedbn", "--compare", "--json"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert {"federated", "fedbn", "local", "pooled"} <= set(out)
    assert set(out["fedbn"]["per_site"]) == set(sites)
    assert out["fedbn"]["per_site"] != out["federated"]["per_site"], "each site's own norm"
    assert out["fedbn"]["overall"]["auroc"] > 0.7
    assert "--personal" in refused(
        sites, "--target", "num", "--positive", "num>0", "--personal", "fedxx"
    )


@pytest.mark.slow
def test_seeds_repeat_the_comparison_and_report_mean_and_sd(sites):
    result = fl_run(
        sites,
        *["--target", "num", "--positive", "num>0", "--rounds", "2", "--local-epochs", "2"],
        *["--seeds", "2", "--seed", "4", "--json"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["seeds"] == [4, 5] and len(out["runs"]) == 2
    aurocs = [run["federated"]["overall"]["auroc"] for run in out["runs"]]
    assert aurocs[0] != aurocs[1], "another seed, another split"
    summary = out["summary"]["federated"]["auroc"]
    assert summary["values"] == aurocs
    assert summary["mean"] == pytest.approx(sum(aurocs) / 2)
    assert summary["sd"] == pytest.approx(abs(aurocs[0] - aurocs[1]) / 2**0.5)
