"""A dermatology site's cohort and training features, read from its own CDM store.

Cohort: psoriasis (condition 140168), a biologic started, and a photograph within 30 days
of the start. Each member gives baseline features (age, sex, BMI, CRP, PASI, psoriatic
arthritis, a previous biologic, the drug started, skin type), the baseline clinic letter
(de-identified, then embedded) and the baseline photograph, and, when a week-16 PASI is
recorded, whether PASI fell by 75% (PASI75). Every photograph of a member with a PASI on
the same day is one sample of the digital biomarker (PASI from the photograph).

Scores and most drugs are unmapped in the starter vocabulary (concept 0): the site names
the source codes its systems use for them in `SiteCodes`, as its data engineer would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from flip.data.cdm.store import Store

PSORIASIS = 140168
CRP = 3020460
BMI = 3038553
#: The biologics a psoriasis patient may start, in the order of the drug columns.
DRUGS = ("adalimumab", "ustekinumab", "secukinumab")
#: Baseline feature columns, before the drug and skin-type columns.
BASELINE = ("age", "male", "bmi", "crp", "pasi0", "psa", "prior_biologic")
FEATURES = (*BASELINE, *DRUGS, *(f"fitzpatrick_{t}" for t in range(1, 7)))
#: Days around the biologic's start in which a photograph is its baseline photograph.
PHOTO_WINDOW = 30
#: Week 16 as recorded: a PASI 12 to 20 weeks after the start.
WEEK16 = (84, 140)


@dataclass(frozen=True)
class SiteCodes:
    """Source codes (as the store keeps them) of what the site's vocabulary leaves unmapped."""

    pasi: frozenset[str]
    fitzpatrick: frozenset[str]
    psa: frozenset[str]
    biologics: dict[str, str] = field(default_factory=dict)  # source code -> drug name


@dataclass
class Member:
    """One cohort member at the biologic's start (index)."""

    person_id: int
    index: date
    drug: str
    photo: str
    fitzpatrick: int | None = None
    features: np.ndarray | None = None
    letter: str = ""
    pasi75: float | None = None


@dataclass
class Attrition:
    """How many people each cohort step keeps, at this site (never released unsuppressed)."""

    psoriasis: int
    biologic: int
    photo: int


@dataclass
class SiteFeatures:
    """A site's training data, rows in person order; nothing here leaves the site."""

    members: list[Member]
    attrition: Attrition
    # Biomarker samples: one photograph each.
    photo_person: np.ndarray
    photo_paths: list[str]
    photo_fitzpatrick: np.ndarray
    photo_pasi: np.ndarray


def _person_rows(conn) -> dict[int, tuple[date, int]]:
    from sqlalchemy import select

    from flip.data.cdm import schema

    p = schema.person.c
    return {
        pid: (date(y, m or 7, d or 1), g)
        for pid, y, m, d, g in conn.execute(
            select(
                p.person_id, p.year_of_birth, p.month_of_birth, p.day_of_birth, p.gender_concept_id
            )
        )
    }


def _measurements(conn, concept_ids: list[int], sources: frozenset[str]):
    """(person, date, value, which) of measurements of `concept_ids` or `sources`."""
    from sqlalchemy import or_, select

    from flip.data.cdm import schema

    m = schema.measurement.c
    rows = conn.execute(
        select(
            m.person_id,
            m.measurement_date,
            m.value_as_number,
            m.measurement_concept_id,
            m.measurement_source_value,
        ).where(
            or_(m.measurement_concept_id.in_(concept_ids), m.measurement_source_value.in_(sources))
        )
    )
    for pid, when, value, concept, source in rows:
        if value is not None:
            yield pid, _day(when), float(value), concept if concept in concept_ids else source


def _day(value) -> date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def _photographs():
    """(person, date, where kept) of every image: its file, else its WADO-RS URL in a PACS."""
    from sqlalchemy import func, select

    from flip.data.cdm import schema

    i = schema.image_occurrence.c
    where = func.coalesce(i.local_path, i.wadors_uri)
    return select(i.person_id, i.image_occurrence_date, where).where(where.is_not(None))


def cohort(store: Store, codes: SiteCodes) -> tuple[list[Member], Attrition]:
    """The members, by person id, and the attrition of the cohort's three steps."""
    from sqlalchemy import select

    from flip.data.cdm import schema
    from flip.data.cohort.optout import opted_out

    c, d = schema.condition_occurrence.c, schema.drug_exposure.c
    with store.connect() as conn:
        excluded = opted_out(conn)
        psoriasis = {
            pid
            for (pid,) in conn.execute(
                select(c.person_id).where(c.condition_concept_id == PSORIASIS)
            )
        } - excluded
        starts: dict[int, list[tuple[date, str]]] = defaultdict(list)
        for pid, when, source in conn.execute(
            select(d.person_id, d.drug_exposure_start_date, d.drug_source_value).where(
                d.drug_source_value.in_(list(codes.biologics))
            )
        ):
            if pid in psoriasis:
                starts[pid].append((_day(when), codes.biologics[source]))
        photos: dict[int, list[tuple[date, str]]] = defaultdict(list)
        for pid, when, path in conn.execute(_photographs()):
            if pid in starts:
                photos[pid].append((_day(when), path))
    members = []
    for pid in sorted(starts):
        for start, drug in sorted(starts[pid], reverse=True):
            near = [
                (abs((when - start).days), when, path)
                for when, path in photos.get(pid, [])
                if abs((when - start).days) <= PHOTO_WINDOW
            ]
            if near:
                members.append(Member(pid, start, drug, min(near)[2]))
                break
    return members, Attrition(len(psoriasis), len(starts), len(members))


def extract(store: Store, codes: SiteCodes) -> SiteFeatures:
    """The cohort with its baseline features, letters and labels, and the biomarker's
    photographs with the PASI recorded the same day."""
    from sqlalchemy import select

    from flip.data.cdm import schema

    members, attrition = cohort(store, codes)
    by_person = {m.person_id: m for m in members}
    c, d, n = schema.condition_occurrence.c, schema.drug_exposure.c, schema.note.c
    with store.connect() as conn:
        people = _person_rows(conn)
        values: dict[tuple[int, object], list[tuple[date, float]]] = defaultdict(list)
        for pid, when, value, which in _measurements(
            conn, [CRP, BMI], codes.pasi | codes.fitzpatrick
        ):
            if pid in by_person:
                key = (
                    "pasi"
                    if which in codes.pasi
                    else "fitz"
                    if which in codes.fitzpatrick
                    else which
                )
                values[(pid, key)].append((when, value))
        psa = {
            pid
            for (pid,) in conn.execute(
                select(c.person_id).where(c.condition_source_value.in_(codes.psa))
            )
        }
        earlier: dict[int, list[date]] = defaultdict(list)
        for pid, when in conn.execute(
            select(d.person_id, d.drug_exposure_start_date).where(
                d.drug_source_value.in_(list(codes.biologics))
            )
        ):
            earlier[pid].append(_day(when))
        letters: dict[int, list[tuple[date, str]]] = defaultdict(list)
        for pid, when, text in conn.execute(select(n.person_id, n.note_date, n.note_text)):
            if pid in by_person:
                letters[pid].append((_day(when), text or ""))
        images = [
            (pid, _day(when), path)
            for pid, when, path in conn.execute(_photographs())
            if pid in by_person
        ]
    for m in members:
        born, gender = people[m.person_id]
        fitz = values.get((m.person_id, "fitz"))
        m.fitzpatrick = round(fitz[0][1]) if fitz else None
        pasi = values.get((m.person_id, "pasi"), [])
        pasi0 = _latest(pasi, m.index - timedelta(PHOTO_WINDOW), m.index)
        m.features = _baseline(m, born, gender, values, pasi0, psa, earlier)
        week16 = [v for w, v in sorted(pasi) if WEEK16[0] <= (w - m.index).days <= WEEK16[1]]
        if week16 and pasi0 is not None and pasi0 > 0:
            m.pasi75 = float(week16[0] <= 0.25 * pasi0)
        m.letter = " ".join(
            t
            for w, t in sorted(letters.get(m.person_id, []))
            if m.index - timedelta(PHOTO_WINDOW) <= w <= m.index
        )
    samples = []
    for pid, when, path in sorted(images):
        score = [v for w, v in values.get((pid, "pasi"), []) if abs((w - when).days) <= 3]
        if score:
            samples.append((pid, path, by_person[pid].fitzpatrick or 0, score[0]))
    return SiteFeatures(
        members,
        attrition,
        np.array([s[0] for s in samples], dtype=np.int64),
        [s[1] for s in samples],
        np.array([s[2] for s in samples], dtype=np.int64),
        np.array([s[3] for s in samples], dtype=np.float32),
    )


def _latest(values: list[tuple[date, float]], start: date, end: date) -> float | None:
    inside = [(w, v) for w, v in values if start <= w <= end]
    return max(inside)[1] if inside else None


def _baseline(m: Member, born, gender, values, pasi0, psa, earlier) -> np.ndarray:
    """The member's baseline feature row in FEATURES order (NaN where missing)."""
    from flip.data.cdm.rows import GENDERS

    window = (m.index - timedelta(PHOTO_WINDOW), m.index)

    def latest(key: object) -> float:
        found = _latest(values.get((m.person_id, key), []), *window)
        return np.nan if found is None else found

    before = [w for w in earlier.get(m.person_id, []) if w < m.index - timedelta(PHOTO_WINDOW)]
    row = [
        (m.index - born).days / 365.25,
        float(gender == GENDERS["male"]),
        latest(BMI),
        latest(CRP),
        np.nan if pasi0 is None else pasi0,
        float(m.person_id in psa),
        float(bool(before)),
        *(float(m.drug == drug) for drug in DRUGS),
        *(float(m.fitzpatrick == t) for t in range(1, 7)),
    ]
    return np.array(row, dtype=np.float32)


def photo_tensors(paths: list[str], size: int) -> np.ndarray:
    """The photographs as (n, 3, size, size) RGB floats in [0, 1], read at the site from
    their files or over WADO-RS from its PACS (DICOM de-identified first)."""
    from flip.data.features.image import pixels

    out = np.zeros((len(paths), 3, size, size), dtype=np.float32)
    for row, path in enumerate(paths):
        out[row] = pixels(path, size, 3, "unit")
    return out
