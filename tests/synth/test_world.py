import pytest

from flip.synth import default_profiles, generate_site


def test_same_seed_same_patients_and_other_seed_differs():
    profile = default_profiles(3)[0]
    assert generate_site(profile, 3) == generate_site(profile, 3)
    assert generate_site(profile, 3) != generate_site(profile, 4)


def test_world_has_a_small_site_and_mixed_formats():
    profiles = default_profiles(3)
    sizes = [p.n_patients for p in profiles]
    assert sizes[-1] == min(sizes) and sizes[-1] * 4 < max(sizes)
    formats = {p.export_format for p in profiles}
    assert {"fhir-bundle", "csv"} <= formats


def test_case_mix_differs_between_sites():
    big, _, small = default_profiles(3)

    def mean_age(profile):
        patients = generate_site(profile, 0)
        return sum((p.index_date - p.birth_date).days / 365.25 for p in patients) / len(patients)

    assert mean_age(big) - mean_age(small) > 5


def test_outcome_depends_on_risk_factors():
    patients = generate_site(default_profiles(1)[0], 0)
    smokers = [p.mace for p in patients if p.smoker]
    others = [p.mace for p in patients if not p.smoker]
    assert sum(smokers) / len(smokers) > 1.5 * sum(others) / len(others)


def test_follow_up_ends_with_a_review_and_no_event_is_seen_after_it():
    from flip.synth.world import STUDY_END

    for p in generate_site(default_profiles(3)[-1], 0):
        assert p.index_date < p.follow_up_end <= STUDY_END and p.review["heart_rate"] > 0
        events = [p.conditions[k] for k in ("mi", "stroke") if k in p.conditions]
        assert all(p.index_date < when <= p.follow_up_end for when in events)


def test_event_times_follow_the_risk_factors_by_proportional_hazards():
    import pandas as pd
    from lifelines import CoxPHFitter

    names = ["sbp", "total_chol", "hdl", "bmi"]
    rows = []
    for p in generate_site(default_profiles(1)[0], 0):
        if not set(names) <= p.measurements.keys():
            continue
        events = [p.conditions[k] for k in ("mi", "stroke") if k in p.conditions]
        end = min(events) if events else p.follow_up_end
        rows.append(
            {
                "age": (p.index_date - p.birth_date).days / 365.25,
                "male": float(p.sex == "male"),
                "smoker": float(p.smoker),
                "diabetes": float("diabetes" in p.conditions),
                **{n: p.measurements[n] for n in names},
                "days": (end - p.index_date).days,
                "event": float(bool(events)),
            }
        )
    fit = CoxPHFitter().fit(pd.DataFrame(rows), "days", "event").params_
    # The log-hazard ratios are the risk score's log-odds weights (flip.synth.world._mace_logit).
    truth = {"age": 0.10, "male": 0.7, "smoker": 1.1, "diabetes": 1.0, "sbp": 0.035}
    truth |= {"total_chol": 0.5, "hdl": -1.4, "bmi": 0.05}
    for name, beta in truth.items():
        assert fit[name] == pytest.approx(beta, abs=max(0.25 * abs(beta), 0.02)), name
