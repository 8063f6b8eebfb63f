"""The cohort builder's concept search takes any text: a search of digits Python calls
digits but int() does not read (a superscript two, "m²" typed as "²") was a 500."""

import pytest

from flip.data.terminology.athena import starter_folder
from flip.hub.concepts import load_concepts
from tests.hub.conftest import web  # noqa: F401 - fixture
from tests.hub.test_web import person
from tests.hub.test_web_concepts import vocabulary_at


@pytest.mark.parametrize("find", ["²", "1²", "³ ²", "٣", "12345678901234567890123"])
def test_a_search_of_other_digits_finds_nothing_and_fails_not(find):
    assert load_concepts(starter_folder()).search(find) == []


def test_the_concept_search_page_answers_a_superscript(web):  # noqa: F811
    owner = person(web, "sup-owner")
    pid = web.call("POST", "/projects", owner.token, json={"name": "p"}).json()["id"]
    with vocabulary_at(web, starter_folder()):
        for path in ("concepts", "cohort"):
            found = owner.http.get(f"/projects/{pid}/{path}", params={"find": "²"})
            assert found.status_code == 200, (path, found.status_code)
