"""The differencing guard must not refuse what gives no small group away: two histograms
(marginals) of one cohort leave their cross cells unknown, however small those cells are."""

from sqlalchemy import create_engine

from flip.data.cohort.guard import ReleaseGuard

#: 200 persons: 4 age bins of 50; in the first bin 3 women, in the others 25, 30 and 45.
AGES = [frozenset(range(i * 50, (i + 1) * 50)) for i in range(4)]
WOMEN = frozenset([*range(0, 3), *range(50, 75), *range(100, 130), *range(150, 195)])  # 103 women
COHORT = frozenset(range(200))
MEN = COHORT - WOMEN


def test_an_age_and_a_sex_histogram_of_one_cohort_stay_releasable(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    ages = ReleaseGuard(engine, "p", "ages", 10, None)
    for released in [COHORT, *AGES]:
        assert not ages.isolates(released)
        ages.hold([released])
    ages.remember([COHORT, *AGES])

    sexes = ReleaseGuard(engine, "p", "sexes", 10, None)
    for released in [COHORT, WOMEN, MEN]:
        assert not sexes.isolates(released), "the 3 women of the first bin stay unknown"
        sexes.hold([released])


def test_a_cross_cell_is_refused_once_the_rest_of_its_bin_is_known(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    guard = ReleaseGuard(engine, "p", "q", 10, None)
    guard.hold([COHORT, *AGES, WOMEN, MEN])
    assert guard.isolates(MEN & AGES[0]), "47 men aged 0-49 less that bin's 50 counts 3 women"
    assert not guard.isolates(MEN & AGES[1]), "25 women: no small group"


def test_a_count_a_few_persons_away_from_a_kept_set_is_refused_whatever_else_is_known(tmp_path):
    """A kept set may stand for more than was shown: an analysis keeps its cohort (100) and
    the persons with a value (94) though it hid how many lack one. A count of those six and
    another kept set (50) would tell the six, even if the two kept counts seem to already."""
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    kept = [frozenset(range(100)), frozenset(range(94)), frozenset(range(200, 250))]
    ReleaseGuard(engine, "p", "analysis", 10, None).remember(kept)
    guard = ReleaseGuard(engine, "p", "q", 10, None)
    assert guard.isolates(frozenset(range(94, 100)) | kept[2])


def test_a_count_of_a_small_set_alone_is_no_difference(tmp_path):
    """Suppressing a small count is the caller's job; the guard is about differences."""
    guard = ReleaseGuard(create_engine(f"sqlite:///{tmp_path / 'ledger.db'}"), "p", "q", 10, None)
    assert not guard.isolates(frozenset(range(4)))
    guard.hold([frozenset(range(100, 200))])
    assert not guard.isolates(frozenset(range(4)))
