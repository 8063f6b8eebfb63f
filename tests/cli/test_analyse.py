"""`flip analyse …` on per-site CSV files: the JSON shapes the issue specifies, equal to pooled."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from typer.testing import CliRunner

from flip.cli.app import app
from flip.synth import default_profiles
from flip.synth.flat import write_table

NUMERIC = {"n", "missing", "mean", "sd", "median", "q1", "q3"}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Three synthetic hospitals' flat CSV extracts (messy: '?' and empty cells)."""
    out = tmp_path_factory.mktemp("tables")
    return {p.name: write_table(p, out / f"{p.name}.csv", 0) for p in default_profiles(3)}


def _site_args(paths: dict) -> list[str]:
    return [arg for name, path in paths.items() for arg in ("--site", f"{name}={path}")]


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["analyse", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _pooled(paths: dict) -> pd.DataFrame:
    frames = [pd.read_csv(p, na_values=["?"]).assign(site=n) for n, p in paths.items()]
    return pd.concat(frames, ignore_index=True)


def test_table1_json_shape_and_pooled_moments(tables, tmp_path):
    result = _run(
        "table1",
        *_site_args(tables),
        "--columns",
        "age,sbp,chest_pain_type",
        "--csv",
        str(tmp_path / "t1.csv"),
        "--html",
        str(tmp_path / "t1.html"),
    )
    assert set(result) >= {"combined", "sites"}
    assert set(result["sites"]) == set(tables)
    pooled = _pooled(tables)
    for stats in [result["combined"], *result["sites"].values()]:
        assert set(stats["sbp"]) == NUMERIC
        assert set(stats["chest_pain_type"]) == {"n", "missing", "counts"}
    for stats in result["sites"].values():
        assert all(
            isinstance(v, int) or v == "<10" for v in stats["chest_pain_type"]["counts"].values()
        )
    sbp = result["combined"]["sbp"]
    assert sbp["n"] == pooled["sbp"].notna().sum()
    assert sbp["missing"] == pooled["sbp"].isna().sum()
    assert sbp["mean"] == pytest.approx(pooled["sbp"].mean(), rel=1e-12)
    assert sbp["sd"] == pytest.approx(pooled["sbp"].std(ddof=1), rel=1e-9)
    assert sbp["median"] == pytest.approx(pooled["sbp"].median(), rel=0.01)
    counts = pooled["chest_pain_type"].value_counts()
    assert result["combined"]["chest_pain_type"]["counts"] == counts.sort_index().to_dict()
    assert (tmp_path / "t1.csv").read_text().startswith("variable,statistic,combined,")
    page = (tmp_path / "t1.html").read_text()
    assert "<table>" in page and "<td>chest_pain_type</td>" in page
    assert "<script" not in page and "http" not in page


def test_linear_regression_equals_statsmodels_on_the_pooled_complete_rows(tables):
    result = _run(
        "regression",
        *_site_args(tables),
        "--target",
        "sbp",
        "--family",
        "linear",
        "--covariates",
        "age,sex,bmi",
    )
    pooled = _pooled(tables)
    complete = pooled.dropna(subset=["sbp", "age", "sex", "bmi"])
    x = sm.add_constant(
        pd.get_dummies(complete[["age", "sex", "bmi"]], drop_first=True, dtype=float)
    )
    reference = sm.OLS(complete["sbp"], x).fit()
    assert result["n"] == len(complete)
    assert sum(result["left_out"].values()) == len(pooled) - len(complete)
    assert list(result["coef"]) == ["intercept", "age", "sex=M", "bmi"]
    order = ["const", "age", "sex_M", "bmi"]
    assert np.allclose(list(result["coef"].values()), reference.params[order], rtol=1e-8)
    assert np.allclose(list(result["se"].values()), reference.bse[order], rtol=1e-8)


def test_survival_json_shape_and_left_out_rows(tmp_path):
    rng = np.random.default_rng(5)
    paths = {}
    for k, n in enumerate((900, 600, 300)):
        frame = pd.DataFrame({"age": rng.normal(60, 10, n).round(1)})
        t = rng.exponential(30 * np.exp(-(frame["age"] - 60) / 20)) + k
        censor = rng.uniform(0, 80, n)
        frame["days"], frame["died"] = np.minimum(t, censor).round(2), (t <= censor).astype(int)
        frame["arm"] = rng.choice(["x", "y"], n)
        frame.loc[:4, "days"] = np.nan
        paths[f"s{k}"] = tmp_path / f"s{k}.csv"
        frame.to_csv(paths[f"s{k}"], index=False)
    args = ["--time", "days", "--event", "died", "--covariates", "age", "--time-bin", "5"]
    result = _run("survival", *_site_args(paths), *args)
    assert set(result) >= {"km", "logrank", "cox"}
    for km in [result["km"]["combined"], *result["km"]["sites"].values()]:
        assert set(km) >= {"median", "times", "survival"}
        assert len(km["times"]) == len(km["survival"])
        assert all(t % 5 == 0 for t in km["times"])
    assert 0 <= result["logrank"]["p"] < 0.05
    assert set(result["cox"]) >= {"coef", "se", "n", "events"}
    assert result["cox"]["n"] == 1800 - 15
    assert result["left_out"] == {"s0": 5, "s1": 5, "s2": 5}
    assert result["cox"]["coef"]["age"] > 0
    grouped = _run(
        "survival", *_site_args(paths), "--time", "days", "--event", "died", "--group", "arm"
    )
    assert set(grouped["km"]["groups"]) == {"x", "y"}
    assert grouped["logrank"]["between"] == "arm" and grouped["logrank"]["df"] == 1
    shown = CliRunner().invoke(
        app, ["analyse", "survival", *_site_args(paths), *args], terminal_width=300
    )
    assert shown.exit_code == 0, shown.output
    title = "Cox model (stratified by site; fitted on s0, s1, s2; n 1785, events"
    assert title in " ".join(shown.stdout.split()), "the title wraps at the table's width"


def test_a_negative_time_is_a_one_line_error_naming_the_row(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("days,died\n3,1\n-2,0\n")
    result = CliRunner().invoke(
        app, ["analyse", "survival", "--site", f"s={path}", "--time", "days", "--event", "died"]
    )
    assert result.exit_code == 1
    assert "site s: row 3 column days: time is negative" in result.output


def test_a_missing_column_is_a_one_line_error(tables):
    result = CliRunner().invoke(
        app, ["analyse", "table1", *_site_args(tables), "--columns", "age,weight"]
    )
    assert result.exit_code == 1
    assert "no column weight" in result.output
    assert "Traceback" not in result.output


def test_cox_leaves_out_a_site_with_a_few_events_so_totals_give_none_away(tmp_path):
    rng = np.random.default_rng(3)
    paths = {}
    for name, events in (("a", 3), ("b", 50)):
        n = 200
        died = np.zeros(n, dtype=int)
        died[:events] = 1
        frame = pd.DataFrame(
            {"days": rng.integers(1, 1000, n), "died": died, "age": rng.normal(60, 10, n)}
        )
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    result = _run(
        "survival", *_site_args(paths), "--time", "days", "--event", "died", "--covariates", "age"
    )
    assert "a" not in result["cox"]["sites"] and "event" in result["cox"]["withheld"]["a"]
    assert result["cox"]["events"] == 50


def _write(tmp_path, frames: dict) -> dict:
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def _people(rng, n: int, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"age": rng.normal(60, 10, n).round(1), **columns})
    frame["sbp"] = (120 + 0.5 * frame["age"] + rng.normal(0, 5, n)).round(1)
    return frame


def test_a_site_with_a_small_category_level_takes_no_part_in_a_regression(tmp_path):
    # Three rows of level "other" at site a: its X'y entry for sex=other would be their sum.
    rng = np.random.default_rng(11)
    sex_a = ["F"] * 100 + ["M"] * 97 + ["other"] * 3
    sex_b = ["F"] * 90 + ["M"] * 80 + ["other"] * 30
    paths = _write(tmp_path, {"a": _people(rng, 200, sex=sex_a), "b": _people(rng, 200, sex=sex_b)})
    for family in ("linear", "logistic"):
        args = ["--target", "sbp", "--covariates", "age,sex", "--family", family]
        result = _run("regression", *_site_args(paths), *args, "--positive", "sbp>150")
        assert set(result["withheld"]) == {"a"}
        assert "sex=other" in result["withheld"]["a"] and "fewer than 10" in result["withheld"]["a"]
        assert result["n"] == 200


def test_a_constant_covariate_is_a_one_line_error_naming_it(tmp_path):
    rng = np.random.default_rng(12)
    paths = _write(tmp_path, {"a": _people(rng, 100, unit=5.0), "b": _people(rng, 100, unit=5.0)})
    result = CliRunner().invoke(
        app,
        ["analyse", "regression", *_site_args(paths), "--target", "sbp", "--family", "linear"],
    )
    assert result.exit_code == 1
    assert "covariate unit is constant in the rows used" in result.output


def test_km_by_group_releases_no_overall_curve_beside_a_sites_small_group(tmp_path):
    # Site a holds 4 persons in arm x: its overall counts less its arm-y counts would count them.
    rng = np.random.default_rng(13)
    frames = {}
    for name, arms in (("a", ["x"] * 4 + ["y"] * 300), ("b", ["x", "y"] * 150)):
        n = len(arms)
        frames[name] = pd.DataFrame(
            {"days": rng.integers(1, 60, n), "died": rng.integers(0, 2, n), "arm": arms}
        )
    paths = _write(tmp_path, frames)
    args = ["--time", "days", "--event", "died", "--group", "arm", "--time-bin", "10"]
    both = _run("survival", *_site_args(paths), *args)
    only_b = _run("survival", *_site_args({"b": paths["b"]}), *args)
    assert "a by group" in both["withheld"]
    assert both["km"]["groups"] == only_b["km"]["groups"]
    assert both["km"]["sites"]["a"]["times"]


def test_a_repeated_column_header_is_a_one_line_error(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("age,sbp,age\n" + "".join(f"{60 + i},{120 + i},{i}\n" for i in range(20)))
    result = CliRunner().invoke(app, ["analyse", "table1", "--site", f"s={path}"])
    assert result.exit_code == 1
    assert "has column 'age' more than once" in result.output


def test_numbers_too_large_for_the_arithmetic_are_one_line_errors(tmp_path):
    rng = np.random.default_rng(14)
    frame = pd.DataFrame({"x": rng.normal(size=50) * 1e200, "days": rng.integers(1, 90, 50) * 1.0})
    frame["died"] = rng.integers(0, 2, 50)
    frame.loc[7, "days"] = 1e20
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    table1 = CliRunner().invoke(app, ["analyse", "table1", "--site", f"s={path}", "--json"])
    assert table1.exit_code == 1 and "row 2 column x: beyond ±1e+150" in table1.output
    survival = CliRunner().invoke(
        app,
        ["analyse", "survival", "--site", f"s={path}", "--time", "days", "--event", "died"],
    )
    assert survival.exit_code == 1 and "use a wider --time-bin" in survival.output


def test_json_output_writes_nan_and_infinity_as_null(capsys):
    from flip.cli.analyse import _print_json

    _print_json({"sd": float("inf"), "p": [float("nan"), 0.5], "n": 3})
    assert json.loads(capsys.readouterr().out) == {"sd": None, "p": [None, 0.5], "n": 3}


def test_a_site_with_a_small_category_level_takes_no_part_in_the_cox_model(tmp_path):
    rng = np.random.default_rng(15)
    frames = {}
    for name, sex in (("a", ["F"] * 150 + ["M"] * 47 + ["other"] * 3), ("b", ["F", "M"] * 100)):
        n = len(sex)
        frames[name] = pd.DataFrame(
            {"days": rng.integers(1, 300, n), "died": rng.integers(0, 2, n), "sex": sex}
        )
    frames["b"].loc[:29, "sex"] = "other"
    paths = _write(tmp_path, frames)
    args = ["--time", "days", "--event", "died", "--covariates", "sex"]
    result = _run("survival", *_site_args(paths), *args)
    assert set(result["cox"]["withheld"]) == {"a"}
    assert "sex=other" in result["cox"]["withheld"]["a"]
    assert set(result["cox"]["sites"]) == {"b"}


def test_small_cross_cells_and_few_positives_withhold_a_site_from_a_regression(tmp_path):
    # Site a: smokers are 50 and men 100, but only 4 men smoke (X'X counts them); site c has
    # 5 positive outcomes (a logistic first step's gradient counts them).
    rng = np.random.default_rng(16)
    a = _people(
        rng, 200, sex=["M"] * 100 + ["F"] * 100, smoker=[1] * 4 + [0] * 96 + [1] * 46 + [0] * 54
    )
    b = _people(rng, 200, sex=["M", "F"] * 100, smoker=[1, 1, 0, 0] * 50)
    c = _people(rng, 200, sex=["M", "F"] * 100, smoker=[1, 0, 0, 1] * 50)
    a["sick"], b["sick"] = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    c["sick"] = [1] * 5 + [0] * 195
    paths = _write(tmp_path, {"a": a, "b": b, "c": c})
    args = ["--target", "sick", "--covariates", "age,sex,smoker", "--family", "logistic"]
    result = _run("regression", *_site_args(paths), *args)
    assert set(result["withheld"]) == {"a", "c"}
    assert "sex=M with smoker" in result["withheld"]["a"]
    assert "sick (outcome)" in result["withheld"]["c"]


@pytest.mark.parametrize("cell", ["inf", "-Infinity"])
def test_an_infinite_value_in_a_numeric_column_is_a_one_line_error_not_a_category(tmp_path, cell):
    path = tmp_path / "s.csv"
    rows = [f"{60 + i},{120 + i}" for i in range(30)]
    rows[4] = f"64,{cell}"
    path.write_text("age,sbp\n" + "\n".join(rows) + "\n")
    args = ["analyse", "table1", "--site", f"s={path}", "--columns", "age,sbp", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"site s: row 6 column sbp: {cell!r} is not a finite number" in result.output
    assert len(result.output.strip().splitlines()) == 1
    text = tmp_path / "t.csv"
    text.write_text("colour\n" + "\n".join(["inf", "red", "blue"] * 10) + "\n")
    words = CliRunner().invoke(app, ["analyse", "table1", "--site", f"t={text}", "--json"])
    assert words.exit_code == 0, "a column of words that holds 'inf' is categorical"
    assert json.loads(words.stdout)["combined"]["colour"]["counts"]["inf"] == 10


def test_logistic_regression_equals_statsmodels_logit_on_the_pooled_complete_rows(tables):
    result = _run(
        "regression",
        *_site_args(tables),
        "--target",
        "num",
        "--positive",
        "num>0",
        "--covariates",
        "age,sex,chol",
    )
    pooled = _pooled(tables)
    complete = pooled.dropna(subset=["num", "age", "sex", "chol"])
    x = sm.add_constant(
        pd.get_dummies(complete[["age", "sex", "chol"]], drop_first=True, dtype=float)
    )
    reference = sm.Logit((complete["num"] > 0).astype(float), x).fit(disp=0, tol=1e-12)
    assert result["n"] == len(complete)
    order = ["const", "age", "sex_M", "chol"]
    assert list(result["coef"]) == ["intercept", "age", "sex=M", "chol"]
    assert np.allclose(list(result["coef"].values()), reference.params[order], rtol=1e-6)
    assert np.allclose(list(result["se"].values()), reference.bse[order], rtol=1e-6)


def test_survival_equals_lifelines_on_the_pooled_rows(tmp_path):
    """Kaplan-Meier and the log-rank test on follow-up rounded up to the time bin (no bin is
    merged at --min-cell 1), and the Cox model stratified by site on the exact times."""
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    rng = np.random.default_rng(8)
    frames = {}
    for k, n in enumerate((500, 350, 250)):
        frame = pd.DataFrame({"age": rng.normal(60, 10, n)})
        t = rng.exponential(30 * np.exp(-(frame["age"] - 60) / 25)) * (1 + 0.3 * k)
        censor = rng.uniform(0, 90, n)
        frame["days"], frame["died"] = np.minimum(t, censor), (t <= censor).astype(int)
        frames[f"s{k}"] = frame
    paths = _write(tmp_path, frames)
    args = ["--time", "days", "--event", "died", "--covariates", "age", "--time-bin", "7"]
    result = _run("survival", *_site_args(paths), *args, "--min-cell", "1")
    pooled = pd.concat([f.assign(site=name) for name, f in frames.items()], ignore_index=True)
    binned = np.ceil(pooled["days"] / 7) * 7
    km = KaplanMeierFitter().fit(binned, pooled["died"])
    combined = result["km"]["combined"]
    expected = km.survival_function_at_times(combined["times"]).to_numpy()
    assert np.allclose(combined["survival"], expected, rtol=1e-12)
    assert combined["median"] == km.median_survival_time_
    test = multivariate_logrank_test(binned, pooled["site"], pooled["died"])
    assert result["logrank"]["p"] == pytest.approx(test.p_value, rel=1e-9)
    cph = CoxPHFitter().fit(pooled[["days", "died", "age", "site"]], "days", "died", strata="site")
    assert result["cox"]["coef"]["age"] == pytest.approx(cph.params_["age"], rel=1e-6)
    assert result["cox"]["se"]["age"] == pytest.approx(cph.standard_errors_["age"], rel=1e-5)


def test_table1_shows_a_small_sites_levels_as_withheld_and_names_it_left_out(tmp_path):
    """Site "small" holds 5 rows: its sex column is released as n "<10" only. The CSV and
    the terminal table show its level counts as withheld (never 0), the combined counts as
    lower bounds, and name it left out; the JSON lists it under `withheld`."""
    big = tmp_path / "big.csv"
    big.write_text("sex\n" + "F\n" * 30 + "M\n" * 25)
    small = tmp_path / "small.csv"
    small.write_text("sex\n" + "F\n" * 3 + "M\n" * 2)
    sites = ["--site", f"big={big}", "--site", f"small={small}"]
    result = _run("table1", *sites, "--csv", str(tmp_path / "t1.csv"))
    assert result["withheld"] == {"sex": ["small"]}
    assert result["combined"]["sex"]["n"] == ">=56"
    rows = {(r[0], r[1]): r[2:] for r in csv.reader((tmp_path / "t1.csv").open())}
    assert rows[("sex", "= F")] == [">=30", "30 (54.5%)", "withheld"]
    assert rows[("sex", "sites left out of combined")] == ["small", "", "not released"]
    shown = CliRunner().invoke(app, ["analyse", "table1", *sites], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "withheld" in shown.stdout and "sites left out" in shown.stdout


def test_level_names_from_a_sites_file_print_as_text_not_markup_or_terminal_codes(tmp_path):
    """A level in a site's CSV that reads as Rich markup or carries an escape sequence is
    printed as written: it neither styles the table nor reaches the terminal raw."""
    path = tmp_path / "a.csv"
    levels = ["[red]F[/red]", "M\x1b[2J"]
    path.write_text("sex\n" + "".join(f"{lvl}\n" for lvl in levels for _ in range(20)))
    shown = CliRunner().invoke(
        app, ["analyse", "table1", "--site", f"a={path}"], terminal_width=300
    )
    assert shown.exit_code == 0, shown.output
    assert "= [red]F[/red]" in shown.stdout
    assert "\x1b" not in shown.stdout and "M\\x1b[2J" in shown.stdout


@pytest.mark.parametrize(
    ("rare", "common", "levels"),
    [("1", "0", ("0", "1")), ("yes", "no", ("0", "1")), ("2", "1", ("1", "2"))],
)
def test_table1_counts_a_two_valued_column_so_its_mean_gives_no_small_count_away(
    tmp_path, rare, common, levels
):
    path = tmp_path / "s.csv"
    rows = [["flag"], *([rare] for _ in range(3)), *([common] for _ in range(97))]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    result = _run("table1", "--site", f"s={path}", "--columns", "flag")
    flag = result["sites"]["s"]["flag"]
    assert "mean" not in flag and flag["counts"] == dict.fromkeys(levels, "<10")


def test_table1_keeps_a_column_of_many_values_numeric(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("x\n" + "\n".join(str(i % 4) for i in range(100)) + "\n")
    result = _run("table1", "--site", f"s={path}", "--columns", "x")
    assert result["sites"]["s"]["x"]["mean"] == pytest.approx(1.5)


def test_survival_leaves_out_of_cox_a_site_whose_n_less_events_is_a_small_censored_count(
    tables, tmp_path
):
    rng = np.random.default_rng(3)
    path = tmp_path / "few_censored.csv"
    rows = [f"{rng.normal(50, 5):.2f},{rng.integers(1, 1000)},{int(i >= 5)}" for i in range(200)]
    path.write_text("age,days,died\n" + "\n".join(rows) + "\n")
    big = tmp_path / "big.csv"
    rows = [f"{rng.normal(50, 5):.2f},{rng.integers(1, 1000)},{i % 2}" for i in range(200)]
    big.write_text("age,days,died\n" + "\n".join(rows) + "\n")
    result = _run(
        "survival",
        "--site",
        f"s={path}",
        "--site",
        f"b={big}",
        "--time",
        "days",
        "--event",
        "died",
        "--covariates",
        "age",
    )
    assert "s" not in result["cox"]["sites"] and "event" in result["cox"]["withheld"]["s"]
    assert result["cox"]["n"] == 200


@pytest.mark.parametrize(
    "args",
    [
        ["regression", "--target", "sbp", "--family", "linear", "--covariates", "age,sbp"],
        ["regression", "--target", "died", "--covariates", "age,died"],
        ["survival", "--time", "days", "--event", "died", "--covariates", "days"],
        ["survival", "--time", "days", "--event", "died", "--covariates", "age,died"],
    ],
)
def test_an_outcome_given_as_a_covariate_is_a_one_line_error(tmp_path, args):
    rng = np.random.default_rng(4)
    frame = _people(rng, 200, days=rng.integers(1, 900, 200), died=rng.integers(0, 2, 200))
    paths = _write(tmp_path, {"s": frame})
    result = CliRunner().invoke(app, ["analyse", args[0], *_site_args(paths), *args[1:]])
    assert result.exit_code == 1 and "is the outcome: drop it" in result.output
    assert "Traceback" not in result.output and "Warning" not in result.output
