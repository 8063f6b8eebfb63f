import pytest

from flip.config import SiteConfig
from flip.hashchain import GENESIS, entry_hash, first_break


def test_site_yaml_paths_are_relative_to_the_file(tmp_path):
    SiteConfig(name="s", store="store.duckdb", ledger="ledger.sqlite").save(tmp_path / "site.yaml")
    loaded = SiteConfig.load(tmp_path / "site.yaml")
    assert loaded.store == str(tmp_path / "store.duckdb")
    assert loaded.policy.min_cell_size == 10
    url = SiteConfig(name="s", store="postgresql+psycopg://h/db", ledger="/abs/l.sqlite")
    url.save(tmp_path / "b.yaml")
    assert SiteConfig.load(tmp_path / "b.yaml").store == "postgresql+psycopg://h/db"


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        ("  max_epsilom: 3\n", "policy.max_epsilom"),
        (
            "  auto_approve:\n    - {kinds: [tabular-logreg], project: [3]}\n",
            "auto_approve.0.project",
        ),
    ],
)
def test_a_misspelt_policy_key_is_refused_naming_the_file_and_key(tmp_path, policy, where):
    """Ignored, a misspelt `max_epsilon` would drop the site's DP ceiling, and a misspelt
    `projects` would let a rule auto-approve for every project."""
    path = tmp_path / "site.yaml"
    path.write_text(f"name: s\nstore: store.duckdb\nledger: ledger.sqlite\npolicy:\n{policy}")
    with pytest.raises(ValueError) as refused:
        SiteConfig.load(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert f"{where}: unknown key" in str(refused.value)


def test_hash_chain_names_the_first_broken_entry():
    entries = []
    previous = GENESIS
    for i in range(3):
        entry = {"seq": i, "action": "x"}
        previous = entry_hash(previous, entry)
        entries.append((entry, previous))
    assert first_break(entries) is None
    entries[1] = ({"seq": 1, "action": "y"}, entries[1][1])
    assert first_break(entries) == 1
