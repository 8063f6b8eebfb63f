"""An OMOP export whose tables are sharded, as BigQuery and Spark write them."""

from flip.data.ingest import ingest_path
from tests.data.accounting import assert_accounted
from tests.data.stored import rows

PERSON = "person_id,gender_concept_id,year_of_birth,race_concept_id,ethnicity_concept_id\n"
MEASUREMENT = (
    "measurement_id,person_id,measurement_concept_id,measurement_date,"
    "measurement_type_concept_id,value_as_number\n"
)


def test_every_shard_of_a_table_is_read(store, tmp_path):
    """`person-00000-of-00002.csv` and `measurement-000000000001.csv` are parts of person
    and measurement: every part loads (the second part of a table is not a duplicate of
    the first), and a file beside an unsharded table of the same name is still refused."""
    folder = tmp_path / "export"
    folder.mkdir()
    files = {
        "person-00000-of-00002.csv": PERSON + "1,8507,1950,0,0\n",
        "person-00001-of-00002.csv": PERSON + "2,8532,1960,0,0\n",
        "measurement-000000000000.csv": MEASUREMENT + "10,1,3004501,2020-01-01,32817,5.5\n",
        "measurement-000000000001.csv": MEASUREMENT + "11,2,3004501,2020-01-02,32817,6.5\n",
        "measurement_part_002.csv": MEASUREMENT + "12,2,3004501,2020-01-03,32817,7.5\n",
        "observation.csv": "observation_id,person_id\n",
        "observation-1.csv": "observation_id,person_id\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    report = ingest_path(store, "omop", folder)
    assert len(rows(store, "person")) == 2
    values = sorted(r["value_as_number"] for r in rows(store, "measurement"))
    assert values == [5.5, 6.5, 7.5]
    assert list(report.unread) == [str(folder / "observation-1.csv")], report.unread
    assert_accounted(store, report)
