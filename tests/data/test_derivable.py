"""The vectorised linear audit agrees with its definition, computed plainly with ranks on
small random cases: a count is refused when it makes a union of atoms (one atom, the
difference or intersection of two sets, or several atoms that three or more sets cut) of 1
to threshold-1 persons (other than itself) derivable that was not, or when it holds a kept
set and a few more persons or the reverse."""

from itertools import combinations

import numpy as np
import pytest

from flip.data.cohort.derivable import Released

THRESHOLD = 3


def _in_span(rows: np.ndarray, group: np.ndarray) -> bool:
    if not len(rows):
        return False
    return np.linalg.matrix_rank(np.vstack([rows, group])) == np.linalg.matrix_rank(rows)


def _reference(
    kept: list[np.ndarray], candidate: np.ndarray, persons: int, threshold: int = THRESHOLD
) -> bool:
    member = np.zeros((len(kept) + 1, persons), dtype=bool)
    for row, s in zip(member, [*kept, candidate], strict=True):
        row[s] = True
    member = member[:, member.any(axis=0)]
    cand = member[-1]
    for row in member[:-1]:
        more, fewer = (cand & ~row).sum(), (row & ~cand).sum()
        if (fewer == 0 and 0 < more < threshold) or (more == 0 and 0 < fewer < threshold):
            return True
    _, atom = np.unique(member.T, axis=0, return_inverse=True)
    atoms = [atom.reshape(-1) == a for a in np.unique(atom)]
    groups = [
        np.any(chosen, axis=0)
        for size in range(1, threshold)
        for chosen in combinations(atoms, size)
    ]
    old, new = member[:-1].astype(float), member.astype(float)
    return any(
        0 < g.sum() < threshold
        and not (g == cand).all()
        and _in_span(new, g.astype(float))
        and not _in_span(old, g.astype(float))
        for g in groups
    )


@pytest.mark.parametrize("threshold", [3, 5])
def test_the_audit_agrees_with_its_definition_on_random_small_cases(threshold):
    rng = np.random.default_rng(7)
    agreed = flagged = 0
    for _ in range(300):
        persons = int(rng.integers(6, 14))
        kept = [
            np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8))
            for _ in range(int(rng.integers(0, 5)))
        ]
        candidate = np.flatnonzero(rng.random(persons) < rng.uniform(0.2, 0.8))
        if not candidate.size:
            continue
        expected = _reference([k for k in kept if k.size], candidate, persons, threshold)
        audit = Released([k for k in kept[:2] if k.size])
        for k in kept[2:]:
            if k.size:
                audit.add(k)  # some loaded at once, some added one by one
        assert audit.reveals(candidate, threshold) == expected, (kept, candidate)
        agreed += 1
        flagged += expected
    assert agreed > 250 and 20 < flagged < agreed - 20, "both answers were exercised"


@pytest.mark.timeout(60, method="thread")
def test_a_search_highs_presolve_loops_on_is_answered():
    """HiGHS 1.12's presolve reduced this infeasible search to nothing and never returned
    (its time limit did not apply): the search runs without presolve."""
    kept = [np.array([1, 11, 12, 15]), np.array([0, *range(2, 12), 13, 14, 15])]
    kept.append(np.array([1, 3, 4, 5, 6, 7, 8, 11, 12, 14]))
    audit = Released(kept)
    candidate = np.array([1, 8, 9, 10, 12, 13])
    assert audit.reveals(candidate, 3) == _reference(kept, candidate, 16)
    assert audit.undecided is None
