"""The differencing guard's linear audit: whether one more released count lets a project
compute, by adding and subtracting counts it was given, how many persons are in a small group.

The released sets and the candidate cut the persons into atoms: persons in exactly the same
sets. A count is the sum of its atoms' sizes, so the size of a group of persons follows from
the released counts exactly when its indicator lies in the span of the released sets'
indicators (inclusion-exclusion, P - A - B + A∩B, is one such combination). The groups
audited are every atom, the difference and the intersection of every two sets (vectorised
over persons), and last any union of small atoms (unions.py: an exact search in atom space).

The audit takes the kept sets as exactly what the project knows: a group that follows from
them is not news. So a candidate that holds a kept set and a few more persons, or the other
way round, is refused whatever else is known (the kept sets of an analysis stand for more
counts than it showed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from flip.data.cohort.unions import LIMITS, UNDECIDED, small_union_revealed

#: Pair groups tested, or basis rows reduced, per matrix product (bounds memory: that many
#: rows x persons floats).
_CHUNK = 64
#: A group is in the span when its squared projection is within this fraction of its size.
_EPS = 1e-6
#: A row is outside the span when more than this fraction of its norm is left (float noise
#: after two Gram-Schmidt passes is some 1e-13 of it).
_TOL = 1e-9


class Released:
    """The sets of persons whose counts a project was given, kept for the audit: the persons
    in any of them, which atom each is in, and an orthonormal basis of the sets' span; and
    why the last check was undecided (`undecided`), if it was."""

    def __init__(self, sets: Sequence[np.ndarray] = ()) -> None:
        self.ids = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *sets]))
        member = np.zeros((len(sets), self.ids.size), dtype=bool)
        for row, members in zip(member, sets, strict=True):
            row[np.searchsorted(self.ids, members)] = True
        self.atom = _atoms(member)
        rows = member.astype(np.float64)
        self._member, self.count = member, len(sets)
        gram = rows @ rows.T
        self._shared = np.rint(gram).astype(np.int64)
        self._basis = _orthonormal(rows, gram)
        self.rank = len(self._basis)
        self.undecided: str | None = None
        for row in rows[self._outside(rows)]:
            self._extend(row)

    def _outside(self, rows: np.ndarray) -> np.ndarray:
        """Which `rows` the basis misses a part of (checked _CHUNK rows at a time: bounds the
        memory to a chunk's residuals)."""
        outside = np.zeros(len(rows), dtype=bool)
        for start in range(0, len(rows), _CHUNK):
            part = rows[start : start + _CHUNK]
            rest = np.linalg.norm(part - (part @ self._basis.T) @ self._basis, axis=1)
            outside[start : start + _CHUNK] = rest > _TOL * np.linalg.norm(part, axis=1)
        return outside

    def add(self, members: np.ndarray) -> None:
        """Keep that the count of `members` (person ids) was released."""
        row = self._row(members)
        if self.count == len(self._member):
            self._member = _grown(self._member, self.ids.size)
            shared = np.zeros((len(self._member),) * 2, dtype=np.int64)
            shared[: self.count, : self.count] = self._shared[: self.count, : self.count]
            self._shared = shared
        n = self.count
        self._shared[n, :n] = self._shared[:n, n] = _overlaps(self._member[:n], row)
        self._shared[n, n] = row.sum()
        self._member[self.count] = row
        self.count += 1
        self.atom = np.unique(self.atom * 2 + row, return_inverse=True)[1].reshape(-1)
        self._extend(row.astype(np.float64))

    def _extend(self, row: np.ndarray) -> None:
        """Add to the basis the part of `row` outside the span, if any."""
        rest = self._rest(row)
        if rest is not None:
            if self.rank == len(self._basis):
                self._basis = _grown(self._basis, self.ids.size)
            self._basis[self.rank] = rest
            self.rank += 1

    def reveals(self, members: np.ndarray, threshold: int) -> bool:
        """Whether releasing the count of `members` (person ids) besides these makes the size
        of an audited group of 1 to threshold-1 persons, other than `members` itself (whose
        own count is the caller's to suppress), derivable that was not. A count the union
        search cannot decide reveals, and `undecided` says why (else None)."""
        self.undecided = None
        if members.size == 0:
            return False
        row = self._row(members)
        if self._nested(row, threshold):
            return True
        unit = self._rest(row.astype(np.float64))
        if unit is None:
            return False  # its count follows from those released: nothing new
        basis = self._basis[: self.rank]
        _, atom, sizes = np.unique(self.atom * 2 + row, return_inverse=True, return_counts=True)
        order = np.argsort(atom.reshape(-1), kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        before = np.zeros(sizes.size)
        for start in range(0, len(basis), _CHUNK):
            part = basis[start : start + _CHUNK][:, order]
            before += (np.add.reduceat(part, starts, axis=1) ** 2).sum(axis=0)
        after = before + np.add.reduceat(unit[order], starts) ** 2
        whole = int(row.sum())
        itself = (sizes == whole) & (np.add.reduceat(row[order].astype(np.int64), starts) == whole)
        if np.any((sizes < threshold) & ~itself & _reached(before, after, sizes)):
            return True
        pairs = (
            g[(g.sum(axis=1) < whole) | (g & ~row).any(axis=1)] for g in self._pairs(row, threshold)
        )
        if any(np.any(_reached(*_projections(g, basis, unit))) for g in pairs):
            return True
        return self._union_revealed(row, unit, atom.reshape(-1), sizes, threshold)

    def _union_revealed(
        self, row: np.ndarray, unit: np.ndarray, atom: np.ndarray, sizes: np.ndarray, threshold: int
    ) -> bool:
        """Whether `row` (whose unit direction outside the span is `unit`) makes a union of
        several small atoms derivable (unions.py), the atoms given by each person's `atom`
        and their sizes; a search past its limits counts as revealing (`undecided`)."""
        small = np.flatnonzero(sizes < threshold)
        if small.size < 2:
            return False
        persons, starts = _gathering(atom, sizes, sizes < threshold)
        gathered, on_small = self._gathered(unit, persons, starts, sizes[small])
        itself = np.add.reduceat(row[persons].astype(np.int64), starts) == sizes[small]
        verdict = small_union_revealed(
            gathered,
            on_small,
            sizes[small],
            threshold,
            itself if int(row.sum()) == int(sizes[small][itself].sum()) else None,
            lambda: self._gathered(
                unit, *_gathering(atom, sizes, sizes >= threshold), sizes[sizes >= threshold]
            ),
        )
        if verdict is UNDECIDED:
            self.undecided = LIMITS
            return True
        return bool(verdict)

    def _gathered(
        self, unit: np.ndarray, persons: np.ndarray, starts: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The basis rows and `unit` gathered onto some atoms (their `persons` in atom order,
        where each starts, and their `sizes`): an atom's column is the sum of its persons'
        over the root of its size, so norms over persons are kept."""
        if persons.size == 0:
            return np.zeros((self.rank, 0)), np.zeros(0)
        root = np.sqrt(sizes.astype(np.float64))
        rows = np.add.reduceat(self._basis[: self.rank][:, persons], starts, axis=1) / root
        return rows, np.add.reduceat(unit[persons], starts) / root

    def _row(self, members: np.ndarray) -> np.ndarray:
        """`members` as a 0/1 row over the persons, who are widened to include them."""
        ids = np.union1d(self.ids, members)
        if ids.size > self.ids.size:
            at = np.searchsorted(ids, self.ids)
            outside = self.atom.max(initial=0) + 1  # the atom of persons in no set
            self.ids, self.atom = ids, _widened(self.atom, at, ids.size, outside)
            self._member = _widened(self._member, at, ids.size, False)
            self._basis = _widened(self._basis, at, ids.size, 0.0)
        row = np.zeros(self.ids.size, dtype=bool)
        row[np.searchsorted(self.ids, members)] = True
        return row

    def _nested(self, row: np.ndarray, threshold: int) -> bool:
        """Whether `row` holds a kept set and 1 to threshold-1 more persons, or the other
        way round: checked whatever else is known, since a kept set may stand for more than
        was shown (a breakdown whose own small cells were suppressed)."""
        shared = _overlaps(self._member[: self.count], row)
        more = int(row.sum()) - shared
        fewer = self._shared.diagonal()[: self.count] - shared
        return bool(
            np.any(((more == 0) & _few(fewer, threshold)) | ((fewer == 0) & _few(more, threshold)))
        )

    def _rest(self, row: np.ndarray) -> np.ndarray | None:
        """The unit part of `row` outside the span (Gram-Schmidt, twice), or None if in it."""
        basis = self._basis[: self.rank]
        rest = row - basis.T @ (basis @ row)
        rest -= basis.T @ (basis @ rest)
        norm = float(np.linalg.norm(rest))
        return rest / norm if norm > _TOL * max(1.0, float(np.linalg.norm(row))) else None

    def _pairs(self, row: np.ndarray, threshold: int) -> Iterator[np.ndarray]:
        """0/1 rows (chunks) of each difference and intersection of two sets, the candidate
        `row` among them, that holds 1 to threshold-1 persons."""
        member = np.vstack([self._member[: self.count], row])
        shared = np.zeros((self.count + 1, self.count + 1), dtype=np.int64)
        shared[:-1, :-1] = self._shared[: self.count, : self.count]
        shared[-1, :-1] = shared[:-1, -1] = _overlaps(member[:-1], row)
        shared[-1, -1] = row.sum()
        apart = shared.diagonal()[:, None] - shared
        for found, less in (
            (np.argwhere((apart > 0) & (apart < threshold)), True),
            (np.argwhere(np.triu((shared > 0) & (shared < threshold))), False),
        ):
            for start in range(0, len(found), _CHUNK):
                i, j = found[start : start + _CHUNK].T
                yield member[i] & (~member[j] if less else member[j])


def _projections(
    groups: np.ndarray, basis: np.ndarray, unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's squared projection on the span before and after `unit`, and its size
    (only groups that `unit` moves: the others cannot newly reach the span)."""
    rows = groups.astype(np.float64)
    lift = (rows @ unit) ** 2
    full = rows.sum(axis=1)
    moved = lift > _EPS * full
    before = ((rows[moved] @ basis.T) ** 2).sum(axis=1)
    return before, before + lift[moved], full[moved]


def _orthonormal(rows: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """An orthonormal basis (rows) of most of the span of `rows` (whose Gram matrix is `gram`),
    from the Gram matrix twice over; a direction lost to rounding is left for
    `Released._extend` to add."""
    basis = rows
    for again in (False, True):
        values, vectors = np.linalg.eigh(basis @ basis.T if again else gram)
        keep = values > values.max(initial=0.0) * 1e-12
        basis = vectors[:, keep].T @ basis
        basis /= np.sqrt(values[keep])[:, None]
    return basis


def _gathering(
    atom: np.ndarray, sizes: np.ndarray, chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The persons of the `chosen` atoms (a mask over atoms) in atom order, and where each
    chosen atom starts among them."""
    persons = np.flatnonzero(chosen[atom])
    persons = persons[np.argsort(atom[persons], kind="stable")]
    return persons, np.concatenate([[0], np.cumsum(sizes[chosen])[:-1]]).astype(np.int64)


def _atoms(member: np.ndarray) -> np.ndarray:
    """Each person's atom: an index shared by the persons in exactly the same sets (rows)."""
    if not len(member):
        return np.zeros(member.shape[1], dtype=np.int64)
    signature = np.ascontiguousarray(np.packbits(member, axis=0).T)
    return np.unique(signature.view(f"V{signature.shape[1]}"), return_inverse=True)[1].reshape(-1)


def _overlaps(member: np.ndarray, row: np.ndarray) -> np.ndarray:
    """How many persons of `row` each set (row of `member`) holds."""
    return np.count_nonzero(member & row, axis=1)


def _few(sizes: np.ndarray, threshold: int) -> np.ndarray:
    return (sizes > 0) & (sizes < threshold)


def _reached(before: np.ndarray, after: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Which groups are in the span after and were not before (projection reaches the norm)."""
    return (before < full * (1 - _EPS)) & (after > full * (1 - _EPS))


def _grown(rows: np.ndarray, width: int) -> np.ndarray:
    """`rows` with room for a quarter more rows (at least one more): a full audit's basis
    grows by one set's row, so doubling it would double the audit's memory."""
    grown = np.zeros((len(rows) + max(1, len(rows) // 4), width), dtype=rows.dtype)
    grown[: len(rows), : rows.shape[1]] = rows
    return grown


def _widened(values: np.ndarray, at: np.ndarray, width: int, fill: object) -> np.ndarray:
    """`values` (1-D, or rows) over more persons: old persons' columns moved to `at`."""
    wide = np.full((*values.shape[:-1], width), fill, dtype=values.dtype)
    wide[..., at] = values
    return wide
