"""The differencing audit's last search: a union of several small atoms whose size one more
released count makes derivable, though no atom, pair difference or intersection alone is.

Work in atom coordinates with the persons' inner product (an atom weighs its size): the
released sets are rows of a 0/1 matrix `B` over atoms and a union `c` (0/1 over atoms) has
a derivable size exactly when `c` lies in the row space of `B`. Only atoms of fewer than
`threshold` persons can be in a small union, so the unions sought live in the subspace K of
vectors on those atoms that the row space holds. Its dimension follows from the sets' Gram
matrix (sizes of overlaps, kept by the audit) by one small eigenproblem; when one more count
does not grow it, nothing new is derivable there. Otherwise a union `c = B^T lam` of 1 to
threshold-1 persons whose combination takes a nonzero share of the new count is a
mixed-integer feasibility problem over 0/1 constraints, which HiGHS (scipy.optimize.milp)
decides; an answer is checked exactly before it is believed. A search larger than
_MOST_CELLS atoms x sets, or one HiGHS cannot finish within its time limit (many sets over
persons each in an atom of their own), is given up and the count released: the atom and
pair checks still apply.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

#: Eigenvalues within this of 1 mark a combination of sets held wholly by the small atoms.
_ONE = 1e-9
#: A union's weight outside the row space is zero within this fraction of its size.
_EPS = 1e-7
#: How much of the new count a union's combination must take to count as news.
_LEAN = 1e-6
#: Solutions that fail the exact check before the search is given up.
_RETRIES = 5
#: Seconds HiGHS may search each way; past it the search is given up (see the docstring).
_TIME_LIMIT = 0.15
#: The largest search (atoms x sets) tried; a larger one is given up unsearched.
_MOST_CELLS = 60_000


def small_union_revealed(
    member: np.ndarray, gram: np.ndarray, sizes: np.ndarray, threshold: int, itself: np.ndarray
) -> bool:
    """Whether the last row of `member` (sets x atoms, 0/1; a set independent of the others),
    released beside the others, makes derivable the size of a union of atoms with 1 to
    threshold-1 persons that was not, other than the last set itself (`itself`, its 0/1 row
    over atoms). `gram` holds the sets' overlaps in persons and `sizes` the atoms' sizes. A
    search too large or not finished in time is given up (not revealing)."""
    small = sizes < threshold
    if np.count_nonzero(small) < 2 or member.size > _MOST_CELLS:
        return False
    if _held(member[:, small], gram, sizes[small]) <= _held(
        member[:-1, small], gram[:-1, :-1], sizes[small]
    ):
        return False  # no combination of sets on the small atoms leans on the new count
    cuts = [itself[small].astype(float)] if not itself[~small].any() else []
    for _ in range(_RETRIES):
        found = _search(member, sizes, small, threshold, cuts)
        if found is None:
            return False
        union = found.astype(float)
        if _outside(member[:, small], gram, sizes[small], union) or not _outside(
            member[:-1, small], gram[:-1, :-1], sizes[small], union
        ):
            cuts.append(union)  # a rounding artefact: exclude it and look again
            continue
        return True
    return False


def _held(member: np.ndarray, gram: np.ndarray, sizes: np.ndarray) -> int:
    """How many independent combinations of the sets lie wholly on the small atoms (the
    dimension of what the sets' row space holds there)."""
    factor = _inverse_root(gram)
    if factor.shape[1] == 0:
        return 0
    lifted = (member.T.astype(np.float64) * np.sqrt(sizes)[:, None]) @ factor
    return int(np.count_nonzero(np.linalg.eigvalsh(lifted.T @ lifted) > 1 - _ONE))


def _inverse_root(gram: np.ndarray) -> np.ndarray:
    """F with F @ F.T the pseudo-inverse of the (symmetric, semi-definite) Gram matrix."""
    values, vectors = np.linalg.eigh(gram.astype(np.float64))
    keep = values > values.max(initial=0.0) * 1e-12
    return vectors[:, keep] / np.sqrt(values[keep])


def _outside(member: np.ndarray, gram: np.ndarray, sizes: np.ndarray, union: np.ndarray) -> bool:
    """Whether the union (0/1 over the small atoms) leaves the sets' row space."""
    weighted = union * sizes
    inner = _inverse_root(gram).T @ (member.astype(np.float64) @ weighted)
    within = float((inner**2).sum())
    whole = float(weighted @ union)
    return whole - within > _EPS * whole


def _search(
    member: np.ndarray,
    sizes: np.ndarray,
    small: np.ndarray,
    threshold: int,
    cuts: list[np.ndarray],
) -> np.ndarray | None:
    """A union of small atoms (0/1 over them) of 1 to threshold-1 persons that is a
    combination of the sets (rows of `member`) with a nonzero share of the last, none of
    `cuts`; None if HiGHS finds none (or none in time)."""
    sets = member.shape[0]
    n = int(np.count_nonzero(small))
    on_small = np.flatnonzero(small)
    # Per atom: sum_j member[j, atom] * lam_j equals c_atom on small atoms and 0 on the rest.
    spread = sparse.csr_array(member.T.astype(np.float64))
    pick = sparse.csr_array((-np.ones(n), (on_small, np.arange(n))), shape=(member.shape[1], n))
    rows = [
        LinearConstraint(sparse.hstack([pick, spread]), 0.0, 0.0),
        LinearConstraint(
            np.concatenate([sizes[small].astype(float), np.zeros(sets)]), 1.0, threshold - 1.0
        ),
    ]
    for cut in cuts:
        sign = np.where(cut > 0.5, 1.0, -1.0)
        rows.append(
            LinearConstraint(np.concatenate([sign, np.zeros(sets)]), -np.inf, cut.sum() - 1)
        )
    bounds = Bounds(
        np.concatenate([np.zeros(n), np.full(sets, -np.inf)]),
        np.concatenate([np.ones(n), np.full(sets, np.inf)]),
    )
    integrality = np.concatenate([np.ones(n), np.zeros(sets)])
    last = np.zeros(n + sets)
    last[-1] = 1.0
    for lean in (LinearConstraint(last, _LEAN, np.inf), LinearConstraint(last, -np.inf, -_LEAN)):
        result = milp(
            np.zeros(n + sets),
            constraints=[*rows, lean],
            integrality=integrality,
            bounds=bounds,
            options={"time_limit": _TIME_LIMIT},
        )
        if result.x is not None:
            return np.rint(result.x[:n])
    return None
