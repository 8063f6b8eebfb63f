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
