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
