"""The cohort builder's concept search: over the vocabulary the hub's operator loaded
(`flip hub serve --vocabulary FOLDER`), by id, code or name; without one, concept ids typed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from flip.data.terminology.athena import starter_folder
from flip.hub.app import create_app
from flip.hub.concepts import Concept, ConceptIndex, VocabularyProblem, _needed, load_concepts
from flip.hub.db import queries
from tests.hub.conftest import Hub
from tests.hub.test_web import person

T2DM = 201826


@contextmanager
def vocabulary_at(hub: Hub, folder: Path | None) -> Iterator[None]:
    """The hub searches the vocabulary in `folder` for the block's length."""
    hub.app.state.concepts = None if folder is None else load_concepts(folder)
    try:
        yield
    finally:
        hub.app.state.concepts = None


def _found(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-concept="(\d+)"', html)]


def test_the_starter_vocabulary_is_searched_by_id_code_and_every_word_of_a_name():
    index = load_concepts(starter_folder())
    assert [c.concept_id for c in index.search(str(T2DM))] == [T2DM]
    assert [c.concept_id for c in index.search("44054006")] == [T2DM], "its SNOMED code"
    assert [c.concept_id for c in index.search("diabetes TYPE 2")] == [T2DM]
    assert [c.concept_id for c in index.search("metformin", domain="Drug")] == [1503297]
    assert index.search("metformin", domain="Condition") == []
    mapped = index.search("e11.9")
    assert [c.concept_id for c in mapped] == [T2DM], "an ICD-10 code finds what it maps to"
    assert mapped[0].via == "ICD10 E11.9"
    assert index.search("no such thing") == [] and index.search("  ") == []


def test_a_vocabulary_keeps_valid_standard_concepts_and_names_any_case_or_spacing(tmp_path):
    header = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
    header += "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"
    rows = [
        "1\tStraße  ẞ accident\tObservation\tSNOMED\tEvent\tS\tA1\t19700101\t20991231\t",
        "2\tAccident at home\tObservation\tSNOMED\tEvent\tS\tA2\t19700101\t20991231\t",
        "3\tAccident, retired\tObservation\tSNOMED\tEvent\tS\tA3\t19700101\t20991231\tD",
        "4\tAccident, unmapped source\tObservation\tICD10\tCode\t\tX4\t19700101\t20991231\t",
        "5\tAnatomical accident class\tObservation\tATC\tATC 1st\tC\tA5\t19700101\t20991231\t",
    ]
    (tmp_path / "CONCEPT.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    index = load_concepts(tmp_path)
    assert len(index) == 3, "retired and unmapped source concepts are left out"
    assert [c.concept_id for c in index.search("ACCIDENT")] == [2, 1, 5], "starts with it, shortest"
    assert [c.concept_id for c in index.search("at HOME")] == [2]
    assert [c.concept_id for c in index.search("strasse ss")] == [1], "case folded, spaces single"
    assert index.search("x4") == [] and index.search("3") == []


def test_the_hub_loads_the_vocabulary_it_is_started_with(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'hub.sqlite'}", vocabulary=starter_folder())
    assert [c.concept_id for c in app.state.concepts.search("hypertension")] == [320128]
    app.state.engine.dispose()


def test_a_researcher_finds_a_concept_by_code_or_name_on_the_cohort_builder(web):
    owner = person(web, "vera")
    pid = web.call("POST", "/projects", owner.token, json={"name": "vocab"}).json()["id"]
    with vocabulary_at(web, starter_folder()):
        builder = owner.http.get(f"/projects/{pid}/cohort?find=44054006")
        assert builder.status_code == 200 and _found(builder.text) == [T2DM]
        assert 'label for="find"' in builder.text
        by_name = owner.http.get(f"/projects/{pid}/concepts?find=diabetes&domain=Condition")
        assert by_name.status_code == 200 and _found(by_name.text) == [T2DM]
        assert "Type 2 diabetes mellitus" in by_name.text and "<html" not in by_name.text
        mapped = owner.http.get(f"/projects/{pid}/concepts?find=I10").text
        assert _found(mapped) == [320128] and "ICD10 I10" in mapped
        none = owner.http.get(f"/projects/{pid}/concepts?find=zzz").text
        assert _found(none) == [] and "No concept" in none
    bare = owner.http.get(f"/projects/{pid}/cohort?find=diabetes").text
    assert _found(bare) == [] and "no vocabulary" in bare, "says to type concept ids instead"


@pytest.mark.parametrize("ticked", [True, False])
def test_include_descendants_sets_the_criterions_descendants_flag(web, ticked):
    owner = person(web, f"vic-{ticked}")
    pid = web.call("POST", "/projects", owner.token, json={"name": f"d-{ticked}"}).json()["id"]
    form = {"mode": "form", "name": "t2dm", "include-0-table": "condition_occurrence"}
    form |= {"include-0-concepts": str(T2DM)}
    form |= {"include-0-descendants": "on"} if ticked else {}
    sent = owner.post(f"/projects/{pid}/queries", form, page=f"/projects/{pid}/cohort")
    assert sent.status_code == 303, sent.text
    with web.app.state.engine.connect() as conn:
        stored = conn.execute(
            select(queries.c.definition).where(queries.c.project_id == pid)
        ).scalar_one()
    criterion = orjson.loads(stored)["include"][0]
    assert criterion == {
        "table": "condition_occurrence",
        "concept_ids": [T2DM],
        "descendants": ticked,
    }


@pytest.mark.parametrize("file", ["CONCEPT.csv", "CONCEPT_RELATIONSHIP.csv"])
def test_a_row_cut_short_is_a_vocabulary_problem_not_a_crash(tmp_path, file):
    header = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
    header += "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"
    rows = ["1\tAccident\tObservation\tSNOMED\tEvent\tS\tA1\t19700101\t20991231\t"]
    relationships = ["concept_id_1\tconcept_id_2\trelationship_id\tinvalid_reason"]
    relationships.append("1\t1\tMaps to\t")
    if file == "CONCEPT.csv":
        rows.append("2\tCut short\tObservation\tSNOMED\tEvent\tS")
    else:
        relationships.append("1")
    (tmp_path / "CONCEPT.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    (tmp_path / "CONCEPT_RELATIONSHIP.csv").write_text("\n".join(relationships) + "\n")
    with pytest.raises(VocabularyProblem, match=f"{file} line 3"):
        load_concepts(tmp_path)


def test_a_search_checks_each_needed_word_once():
    """`(?=...e)` a hundred times over every name was a request costing seconds: a word the
    search holds twice, or inside another of its words, adds nothing to check."""
    assert _needed(["e"] * 98 + ["qz"]) == ["qz", "e"]
    assert sorted(_needed(["heart", "hear", "17", "7", "ear"])) == ["17", "heart"]
    names = [f"disease {i} of the left heart" for i in range(100)]
    index = ConceptIndex(
        [Concept(i, n, "Condition", "SNOMED", str(i)) for i, n in enumerate(names)], {}
    )
    assert index.search("e " * 98 + "qz") == []
    assert [c.concept_id for c in index.search("heart hear 17 7 ear")][:1] == [17]


def test_concept_search_is_the_projects_and_shows_hostile_names_as_text(web, tmp_path):
    """An outsider finds no project; a vocabulary's markup and a query's are shown escaped;
    a query over 200 characters is refused."""
    header = "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\t"
    header += "standard_concept\tconcept_code\tvalid_start_date\tvalid_end_date\tinvalid_reason"
    row = '9\t<img src=x onerror=alert(1)> "x\tCondition\tSNOMED\tX\tS\t=cmd|1'
    row += "\t19700101\t20991231\t"
    (tmp_path / "CONCEPT.csv").write_text(f"{header}\n{row}\n", encoding="utf-8")
    owner, outsider = person(web, "hostile-owner"), person(web, "hostile-out")
    pid = web.call("POST", "/projects", owner.token, json={"name": "hv"}).json()["id"]
    with vocabulary_at(web, tmp_path):
        assert outsider.http.get(f"/projects/{pid}/concepts?find=img").status_code == 404
        shown = owner.http.get(f"/projects/{pid}/concepts", params={"find": "<img"}).text
        assert _found(shown) == [9] and "<img" not in shown and "&lt;img" in shown
        long = owner.http.get(f"/projects/{pid}/concepts", params={"find": "(" * 201})
        assert long.status_code == 422
