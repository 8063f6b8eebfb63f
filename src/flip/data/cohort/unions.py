"""The differencing audit's last search: a union of several small atoms whose size one more
released count makes derivable, though no atom, pair difference or intersection alone is.

Only atoms of fewer than `threshold` persons can be in a small union, so the search works in
the space of those atoms alone, with the persons' inner product (an atom weighs its size):
a union `c` (0/1 over the small atoms) has a derivable size exactly when it lies in K, the
vectors on the small atoms that the released sets' span holds. K is found from the span's
orthonormal basis gathered onto the small atoms (`gathered`: basis rows x small atoms) by
one eigenproblem of the smaller side (eigenvalue 1: nothing outside the small atoms), so
the sets that only cut large atoms, however many a project was given, add to neither side
of the search. When one more count does not grow K nothing new is derivable there;
otherwise a union of 1 to threshold-1 persons in K but not in the K before is a
mixed-integer feasibility problem over K's basis and the small atoms K touches (the others
are in no such union), which HiGHS (scipy.optimize.milp) decides; an answer is checked
against the span before it is believed.

Past _MOST_SIDE, the count is checked from the large atoms instead: when its new direction
there has a clear part the span cannot cancel, no combination with a share of it lies on the
small atoms, so nothing new is derivable there (`_news`). A search this cannot decide (K's
side past _MOST_SIDE with possible news, the problem past _MOST_CELLS small
atoms x K's dimension, HiGHS past _MOST_NODES branch-and-bound nodes, or no answer that
survives the check) is `UNDECIDED`: the audit takes it as revealing, so a count that cannot
be checked is withheld. Every one of these limits counts work, not time, so a loaded machine
withholds exactly what a quiet one does; a wall-clock safety net (_SAFETY_SECONDS a search)
only stops a search gone wrong, and withholds too.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

#: Eigenvalues within this of 1 mark a combination of sets held wholly by the small atoms.
_ONE = 1e-9
#: A union's weight outside the span is zero within this fraction of its size.
_EPS = 1e-7
#: How far from K before a union must lie (its share of K's new direction) to count as news:
#: well above HiGHS's feasibility tolerances (1e-7 a row, 1e-6 an integer), or a union in K
#: before passes for news.
_LEAN = 1e-4
#: A small atom whose row in K's orthonormal basis is shorter than this is in no union K
#: holds (one is at least 1/sqrt(threshold) long there): it is left out of the search.
_IN_PLAY = 1e-6
#: Solutions that fail the check before the search is undecided.
_RETRIES = 5
#: Branch-and-bound nodes HiGHS may explore each way; past it the search is undecided. A
#: count of work, so the verdict does not depend on how loaded the machine is. HiGHS runs
#: without presolve: 1.12's presolve emptied a small infeasible search and then never
#: returned, its limits unheeded (tests/data/test_derivable.py); the searches here are small.
_MOST_NODES = 5_000
#: Wall-clock seconds one search may take in all, a safety net only (the work limits above
#: decide): past it the search is undecided.
_SAFETY_SECONDS = 60.0
#: The clock the safety net reads.
_clock = monotonic
#: The largest eigenproblem side (min of basis rows and small atoms) solved to find K.
_MOST_SIDE = 1_500
#: Past _MOST_SIDE, the largest side (min of basis rows and large atoms) of the check that
#: the new count leaves nothing new on the small atoms; a larger one is undecided.
_MOST_LARGE_SIDE = 4_000
#: A singular value of the basis on the large atoms at most this is taken as zero: the
#: combination lies on the small atoms (as K takes eigenvalues within _ONE of 1); any larger
#: one as spanning, so doubt leans to news.
_FLAT = 1e-7
#: The new direction's part on the large atoms outside the span there must pass this for
#: the count to leave nothing new on the small atoms (rounding leaves some 1e-13).
_CLEAR = 1e-6
#: The largest search (small atoms x K's dimension) tried; a larger one is undecided.
_MOST_CELLS = 60_000
#: Why a search was undecided: the audit's limits, named in a refusal.
LIMITS = (
    f"the differencing audit's union search could not decide it within its limits "
    f"({_MOST_CELLS:,} small atoms x combinations, {_MOST_NODES:,} search nodes each way, "
    f"{_SAFETY_SECONDS:.0f} s in all)"
)


class _Undecided:
    """The verdict of a search that could not decide."""

    def __repr__(self) -> str:
        return "UNDECIDED"


UNDECIDED = _Undecided()


def small_union_revealed(
    gathered: np.ndarray,
    unit: np.ndarray,
    sizes: np.ndarray,
    threshold: int,
    itself: np.ndarray | None,
    large: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> bool | _Undecided:
    """Whether the count whose new unit direction gathered onto the small atoms is `unit`,
    released beside the sets whose orthonormal basis gathered there is `gathered` (rows;
    an atom's column is the sum of its persons' over the root of its `sizes`), makes the size
    of a union of small atoms with 1 to threshold-1 persons derivable that was not, other
    than the count's own set (`itself`, 0/1 over the small atoms, or None when it holds
    persons outside them); UNDECIDED when the search passes its limits. Past _MOST_SIDE a
    side, `large()` (the basis and the unit direction gathered onto the large atoms) tells
    whether there can be news on the small atoms at all (`_news`)."""
    if len(sizes) < 2:
        return False
    if min(len(gathered) + 1, len(sizes)) > _MOST_SIDE:
        return UNDECIDED if _news(*large()) else False
    grown = np.vstack([gathered, unit])
    before, after = _held(gathered), _held(grown)
    news = _beyond(after, before)
    if news.shape[1] == 0:
        return False  # no combination of sets on the small atoms leans on the new count
    live = np.linalg.norm(after, axis=1) > _IN_PLAY
    if np.count_nonzero(live) * after.shape[1] > _MOST_CELLS:
        return UNDECIDED
    cuts = [itself[live].astype(float)] if itself is not None and not itself[~live].any() else []
    root = np.sqrt(sizes[live].astype(np.float64))
    deadline = _clock() + _SAFETY_SECONDS
    for _ in range(_RETRIES):
        found = _search(before[live], news[live], root, threshold, cuts, deadline)
        if found is None or found is UNDECIDED:
            return False if found is None else UNDECIDED
        weighted = np.zeros(len(sizes))
        weighted[live] = found * root
        if not _in_span(grown, weighted) or _in_span(gathered, weighted):
            cuts.append(found)  # a rounding artefact: exclude it and look again
            continue
        return True
    return UNDECIDED


def _news(large: np.ndarray, unit: np.ndarray) -> bool:
    """Whether some combination of the released sets and the new count, with a share of the
    new count, may lie wholly on the small atoms: whether the new unit direction gathered
    onto the large atoms (`unit`) may be a combination of the span's basis gathered there
    (`large`: rows), which a combination must cancel there. Only a clear part outside is
    taken as none; past _MOST_LARGE_SIDE a side, there may be."""
    if min(large.shape) > _MOST_LARGE_SIDE:
        return True
    if large.size == 0:
        return float(np.linalg.norm(unit)) <= _CLEAR
    _, values, right = np.linalg.svd(large, full_matrices=False)
    span = right[values > _FLAT]
    return float(np.linalg.norm(unit - span.T @ (span @ unit))) <= _CLEAR


def _held(gathered: np.ndarray) -> np.ndarray:
    """An orthonormal basis (columns, over the small atoms weighted by the roots of their
    sizes) of the combinations of the sets that lie wholly on the small atoms: the
    eigenvalue-1 eigenvectors, from whichever of the two Gram matrices is smaller."""
    if len(gathered) == 0:
        return np.zeros((gathered.shape[1], 0))
    if len(gathered) < gathered.shape[1]:
        values, vectors = np.linalg.eigh(gathered @ gathered.T)
        return gathered.T @ vectors[:, values > 1 - _ONE]
    values, vectors = np.linalg.eigh(gathered.T @ gathered)
    return vectors[:, values > 1 - _ONE]


def _beyond(after: np.ndarray, before: np.ndarray) -> np.ndarray:
    """An orthonormal basis (columns) of the part of `after`'s span outside `before`'s."""
    rest = after - before @ (before.T @ after)
    left, values, _ = np.linalg.svd(rest, full_matrices=False)
    return left[:, values > 0.5]


def _in_span(gathered: np.ndarray, weighted: np.ndarray) -> bool:
    """Whether a vector on the small atoms (weighted) lies in the span of the sets whose
    orthonormal basis gathered onto them is `gathered`."""
    whole = float(weighted @ weighted)
    return whole - float(((gathered @ weighted) ** 2).sum()) <= _EPS * whole


def _search(
    before: np.ndarray,
    news: np.ndarray,
    root: np.ndarray,
    threshold: int,
    cuts: list[np.ndarray],
    deadline: float,
) -> np.ndarray | _Undecided | None:
    """A union of small atoms (0/1 over them, weighted by `root`) of 1 to threshold-1 persons
    that is a combination of `before`'s and `news`' columns with a share of a new one, none
    of `cuts`; None if there is none, UNDECIDED if HiGHS cannot tell within _MOST_NODES nodes
    or before the `deadline` (on `_clock`)."""
    n = len(root)
    basis = np.hstack([before, news])
    k = basis.shape[1]
    # Per small atom: root * c equals the combination of K's basis.
    rows = [
        LinearConstraint(sparse.hstack([sparse.diags(root), sparse.csr_array(-basis)]), 0.0, 0.0),
        LinearConstraint(np.concatenate([root**2, np.zeros(k)]), 1.0, threshold - 1.0),
    ]
    for cut in cuts:
        sign = np.where(cut > 0.5, 1.0, -1.0)
        rows.append(LinearConstraint(np.concatenate([sign, np.zeros(k)]), -np.inf, cut.sum() - 1))
    bounds = Bounds(
        np.concatenate([np.zeros(n), np.full(k, -np.inf)]),
        np.concatenate([np.ones(n), np.full(k, np.inf)]),
    )
    integrality = np.concatenate([np.ones(n), np.zeros(k)])
    undecided = False
    for column in news.T:
        share = np.concatenate([column * root, np.zeros(k)])
        for lean in (
            LinearConstraint(share, _LEAN, np.inf),
            LinearConstraint(share, -np.inf, -_LEAN),
        ):
            left = deadline - _clock()
            if left <= 0:
                return UNDECIDED
            result = milp(
                np.zeros(n + k),
                constraints=[*rows, lean],
                integrality=integrality,
                bounds=bounds,
                options={"node_limit": _MOST_NODES, "time_limit": left, "presolve": False},
            )
            if result.x is not None:
                return np.rint(result.x[:n])
            undecided = undecided or result.status != 2
    return UNDECIDED if undecided else None
