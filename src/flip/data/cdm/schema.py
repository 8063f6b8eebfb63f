"""OMOP CDM v5.4 tables, vocabulary tables and FLIP's provenance tables (SQLAlchemy Core)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()


def _id(name: str, primary: bool = False, required: bool = False) -> Column:
    return Column(
        name,
        BigInteger,
        primary_key=primary,
        autoincrement=False,
        nullable=not (primary or required),
    )


def _concept(name: str, required: bool = False) -> Column:
    return Column(name, Integer, nullable=not required)


person = Table(
    "person",
    metadata,
    _id("person_id", primary=True),
    _concept("gender_concept_id", required=True),
    Column("year_of_birth", Integer, nullable=False),
    Column("month_of_birth", Integer),
    Column("day_of_birth", Integer),
    Column("birth_datetime", DateTime),
    _concept("race_concept_id", required=True),
    _concept("ethnicity_concept_id", required=True),
    _id("location_id"),
    _id("provider_id"),
    _id("care_site_id"),
    Column("person_source_value", String(50)),
    Column("gender_source_value", String(50)),
    _concept("gender_source_concept_id"),
    Column("race_source_value", String(50)),
    _concept("race_source_concept_id"),
    Column("ethnicity_source_value", String(50)),
    _concept("ethnicity_source_concept_id"),
)

observation_period = Table(
    "observation_period",
    metadata,
    _id("observation_period_id", primary=True),
    _id("person_id", required=True),
    Column("observation_period_start_date", Date, nullable=False),
    Column("observation_period_end_date", Date, nullable=False),
    _concept("period_type_concept_id", required=True),
)

visit_occurrence = Table(
    "visit_occurrence",
    metadata,
    _id("visit_occurrence_id", primary=True),
    _id("person_id", required=True),
    _concept("visit_concept_id", required=True),
    Column("visit_start_date", Date, nullable=False),
    Column("visit_start_datetime", DateTime),
    Column("visit_end_date", Date, nullable=False),
    Column("visit_end_datetime", DateTime),
    _concept("visit_type_concept_id", required=True),
    _id("provider_id"),
    _id("care_site_id"),
    Column("visit_source_value", String(50)),
    _concept("visit_source_concept_id"),
    _concept("admitted_from_concept_id"),
    Column("admitted_from_source_value", String(50)),
    _concept("discharged_to_concept_id"),
    Column("discharged_to_source_value", String(50)),
    _id("preceding_visit_occurrence_id"),
)

condition_occurrence = Table(
    "condition_occurrence",
    metadata,
    _id("condition_occurrence_id", primary=True),
    _id("person_id", required=True),
    _concept("condition_concept_id", required=True),
    Column("condition_start_date", Date, nullable=False),
    Column("condition_start_datetime", DateTime),
    Column("condition_end_date", Date),
    Column("condition_end_datetime", DateTime),
    _concept("condition_type_concept_id", required=True),
    _concept("condition_status_concept_id"),
    Column("stop_reason", String(20)),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    Column("condition_source_value", String(50)),
    _concept("condition_source_concept_id"),
    Column("condition_status_source_value", String(50)),
)

measurement = Table(
    "measurement",
    metadata,
    _id("measurement_id", primary=True),
    _id("person_id", required=True),
    _concept("measurement_concept_id", required=True),
    Column("measurement_date", Date, nullable=False),
    Column("measurement_datetime", DateTime),
    Column("measurement_time", String(10)),
    _concept("measurement_type_concept_id", required=True),
    _concept("operator_concept_id"),
    Column("value_as_number", Float),
    _concept("value_as_concept_id"),
    _concept("unit_concept_id"),
    Column("range_low", Float),
    Column("range_high", Float),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    Column("measurement_source_value", String(50)),
    _concept("measurement_source_concept_id"),
    Column("unit_source_value", String(50)),
    _concept("unit_source_concept_id"),
    Column("value_source_value", String(50)),
    _id("measurement_event_id"),
    _concept("meas_event_field_concept_id"),
)

observation = Table(
    "observation",
    metadata,
    _id("observation_id", primary=True),
    _id("person_id", required=True),
    _concept("observation_concept_id", required=True),
    Column("observation_date", Date, nullable=False),
    Column("observation_datetime", DateTime),
    _concept("observation_type_concept_id", required=True),
    Column("value_as_number", Float),
    Column("value_as_string", String(60)),
    _concept("value_as_concept_id"),
    _concept("qualifier_concept_id"),
    _concept("unit_concept_id"),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    Column("observation_source_value", String(50)),
    _concept("observation_source_concept_id"),
    Column("unit_source_value", String(50)),
    Column("qualifier_source_value", String(50)),
    Column("value_source_value", String(50)),
    _id("observation_event_id"),
    _concept("obs_event_field_concept_id"),
)

death = Table(
    "death",
    metadata,
    _id("person_id", primary=True),
    Column("death_date", Date, nullable=False),
    Column("death_datetime", DateTime),
    _concept("death_type_concept_id"),
    _concept("cause_concept_id"),
    Column("cause_source_value", String(50)),
    _concept("cause_source_concept_id"),
)

concept = Table(
    "concept",
    metadata,
    Column("concept_id", Integer, primary_key=True, autoincrement=False),
    Column("concept_name", String(255), nullable=False),
    Column("domain_id", String(20), nullable=False),
    Column("vocabulary_id", String(20), nullable=False),
    Column("concept_class_id", String(20), nullable=False),
    Column("standard_concept", String(1)),
    Column("concept_code", String(50), nullable=False),
    Column("valid_start_date", Date, nullable=False),
    Column("valid_end_date", Date, nullable=False),
    Column("invalid_reason", String(1)),
)

concept_relationship = Table(
    "concept_relationship",
    metadata,
    Column("concept_id_1", Integer, primary_key=True, autoincrement=False),
    Column("concept_id_2", Integer, primary_key=True, autoincrement=False),
    Column("relationship_id", String(20), primary_key=True),
    Column("valid_start_date", Date, nullable=False),
    Column("valid_end_date", Date, nullable=False),
    Column("invalid_reason", String(1)),
)

ingest_run = Table(
    "ingest_run",
    metadata,
    _id("ingest_run_id", primary=True),
    Column("source_kind", String(20), nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(20), nullable=False),
    Column("records_read", Integer, nullable=False, default=0),
    Column("records_loaded", Integer, nullable=False, default=0),
    Column("records_unchanged", Integer, nullable=False, default=0),
    Column("records_quarantined", Integer, nullable=False, default=0),
)

#: One row per CDM row: which source record and which ingest run produced it.
source_record = Table(
    "source_record",
    metadata,
    Column("cdm_table", String(40), primary_key=True),
    _id("cdm_id", primary=True),
    Column("source_system", String(200), nullable=False, index=True),
    Column("record_key", String(200), nullable=False),
    Column("location", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    _id("ingest_run_id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    _id("quarantine_id", primary=True),
    _id("ingest_run_id"),
    Column("source_system", String(200), nullable=False),
    Column("location", Text, nullable=False),
    Column("record_key", String(200)),
    Column("rule", String(60), nullable=False),
    Column("message", Text, nullable=False),
    Column("raw", LargeBinary),
)


@dataclass(frozen=True)
class EventColumns:
    """The columns every event table has under its own names."""

    prefix: str
    date: str
    value: str | None

    @property
    def concept(self) -> str:
        """The standard concept column."""
        return f"{self.prefix}_concept_id"


#: Event tables and their column names.
EVENT_COLUMNS: dict[str, EventColumns] = {
    "condition_occurrence": EventColumns("condition", "condition_start_date", None),
    "measurement": EventColumns("measurement", "measurement_date", "value_as_number"),
    "observation": EventColumns("observation", "observation_date", "value_as_number"),
    "visit_occurrence": EventColumns("visit", "visit_start_date", None),
}

#: Where a coded event lands, by the domain of its standard concept.
DOMAIN_TABLES: dict[str, str] = {
    "Condition": "condition_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
}
