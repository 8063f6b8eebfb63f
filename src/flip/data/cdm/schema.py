"""OMOP CDM v5.4 tables, vocabulary tables and FLIP's provenance tables (SQLAlchemy Core)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Dialect,
    Double,
    Index,
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


def _str(name: str, length: int = 50, required: bool = False) -> Column:
    return Column(name, String(length), nullable=not required)


def _date(name: str, required: bool = False) -> Column:
    return Column(name, Date, nullable=not required)


def _datetime(name: str) -> Column:
    return Column(name, DateTime)


def _number(name: str) -> Column:
    return Column(name, Double)


def _int(name: str) -> Column:
    return Column(name, Integer)


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
    Column("value_as_number", Double),
    _concept("value_as_concept_id"),
    _concept("unit_concept_id"),
    Column("range_low", Double),
    Column("range_high", Double),
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
    Column("value_as_number", Double),
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

visit_detail = Table(
    "visit_detail",
    metadata,
    _id("visit_detail_id", primary=True),
    _id("person_id", required=True),
    _concept("visit_detail_concept_id", required=True),
    _date("visit_detail_start_date", required=True),
    _datetime("visit_detail_start_datetime"),
    _date("visit_detail_end_date", required=True),
    _datetime("visit_detail_end_datetime"),
    _concept("visit_detail_type_concept_id", required=True),
    _id("provider_id"),
    _id("care_site_id"),
    _str("visit_detail_source_value"),
    _concept("visit_detail_source_concept_id"),
    _concept("admitted_from_concept_id"),
    _str("admitted_from_source_value"),
    _str("discharged_to_source_value"),
    _concept("discharged_to_concept_id"),
    _id("preceding_visit_detail_id"),
    _id("parent_visit_detail_id"),
    _id("visit_occurrence_id", required=True),
)

drug_exposure = Table(
    "drug_exposure",
    metadata,
    _id("drug_exposure_id", primary=True),
    _id("person_id", required=True),
    _concept("drug_concept_id", required=True),
    _date("drug_exposure_start_date", required=True),
    _datetime("drug_exposure_start_datetime"),
    _date("drug_exposure_end_date", required=True),
    _datetime("drug_exposure_end_datetime"),
    _date("verbatim_end_date"),
    _concept("drug_type_concept_id", required=True),
    _str("stop_reason", 20),
    _int("refills"),
    _number("quantity"),
    _int("days_supply"),
    Column("sig", Text),
    _concept("route_concept_id"),
    _str("lot_number"),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    _str("drug_source_value"),
    _concept("drug_source_concept_id"),
    _str("route_source_value"),
    _str("dose_unit_source_value"),
)

procedure_occurrence = Table(
    "procedure_occurrence",
    metadata,
    _id("procedure_occurrence_id", primary=True),
    _id("person_id", required=True),
    _concept("procedure_concept_id", required=True),
    _date("procedure_date", required=True),
    _datetime("procedure_datetime"),
    _date("procedure_end_date"),
    _datetime("procedure_end_datetime"),
    _concept("procedure_type_concept_id", required=True),
    _concept("modifier_concept_id"),
    _int("quantity"),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    _str("procedure_source_value"),
    _concept("procedure_source_concept_id"),
    _str("modifier_source_value"),
)

device_exposure = Table(
    "device_exposure",
    metadata,
    _id("device_exposure_id", primary=True),
    _id("person_id", required=True),
    _concept("device_concept_id", required=True),
    _date("device_exposure_start_date", required=True),
    _datetime("device_exposure_start_datetime"),
    _date("device_exposure_end_date"),
    _datetime("device_exposure_end_datetime"),
    _concept("device_type_concept_id", required=True),
    _str("unique_device_id", 255),
    _str("production_id", 255),
    _int("quantity"),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    _str("device_source_value"),
    _concept("device_source_concept_id"),
    _concept("unit_concept_id"),
    _str("unit_source_value"),
    _concept("unit_source_concept_id"),
)

note = Table(
    "note",
    metadata,
    _id("note_id", primary=True),
    _id("person_id", required=True),
    _date("note_date", required=True),
    _datetime("note_datetime"),
    _concept("note_type_concept_id", required=True),
    _concept("note_class_concept_id", required=True),
    _str("note_title", 250),
    Column("note_text", Text, nullable=False),
    _concept("encoding_concept_id", required=True),
    _concept("language_concept_id", required=True),
    _id("provider_id"),
    _id("visit_occurrence_id"),
    _id("visit_detail_id"),
    _str("note_source_value"),
    _id("note_event_id"),
    _concept("note_event_field_concept_id"),
)

note_nlp = Table(
    "note_nlp",
    metadata,
    _id("note_nlp_id", primary=True),
    _id("note_id", required=True),
    _concept("section_concept_id"),
    _str("snippet", 250),
    _str("offset", 50),
    _str("lexical_variant", 250, required=True),
    _concept("note_nlp_concept_id"),
    _concept("note_nlp_source_concept_id"),
    _str("nlp_system", 250),
    _date("nlp_date", required=True),
    _datetime("nlp_datetime"),
    _str("term_exists", 1),
    _str("term_temporal", 50),
    _str("term_modifiers", 2000),
)

specimen = Table(
    "specimen",
    metadata,
    _id("specimen_id", primary=True),
    _id("person_id", required=True),
    _concept("specimen_concept_id", required=True),
    _concept("specimen_type_concept_id", required=True),
    _date("specimen_date", required=True),
    _datetime("specimen_datetime"),
    _number("quantity"),
    _concept("unit_concept_id"),
    _concept("anatomic_site_concept_id"),
    _concept("disease_status_concept_id"),
    _str("specimen_source_id"),
    _str("specimen_source_value"),
    _str("unit_source_value"),
    _str("anatomic_site_source_value"),
    _str("disease_status_source_value"),
)

fact_relationship = Table(
    "fact_relationship",
    metadata,
    _concept("domain_concept_id_1", required=True),
    _id("fact_id_1", required=True),
    _concept("domain_concept_id_2", required=True),
    _id("fact_id_2", required=True),
    _concept("relationship_concept_id", required=True),
)

location = Table(
    "location",
    metadata,
    _id("location_id", primary=True),
    _str("address_1"),
    _str("address_2"),
    _str("city"),
    _str("state", 2),
    _str("zip", 9),
    _str("county", 20),
    _str("location_source_value"),
    _concept("country_concept_id"),
    _str("country_source_value", 80),
    _number("latitude"),
    _number("longitude"),
)

care_site = Table(
    "care_site",
    metadata,
    _id("care_site_id", primary=True),
    _str("care_site_name", 255),
    _concept("place_of_service_concept_id"),
    _id("location_id"),
    _str("care_site_source_value"),
    _str("place_of_service_source_value"),
)

provider = Table(
    "provider",
    metadata,
    _id("provider_id", primary=True),
    _str("provider_name", 255),
    _str("npi", 20),
    _str("dea", 20),
    _concept("specialty_concept_id"),
    _id("care_site_id"),
    _int("year_of_birth"),
    _concept("gender_concept_id"),
    _str("provider_source_value"),
    _str("specialty_source_value"),
    _concept("specialty_source_concept_id"),
    _str("gender_source_value"),
    _concept("gender_source_concept_id"),
)

payer_plan_period = Table(
    "payer_plan_period",
    metadata,
    _id("payer_plan_period_id", primary=True),
    _id("person_id", required=True),
    _date("payer_plan_period_start_date", required=True),
    _date("payer_plan_period_end_date", required=True),
    _concept("payer_concept_id"),
    _str("payer_source_value"),
    _concept("payer_source_concept_id"),
    _concept("plan_concept_id"),
    _str("plan_source_value"),
    _concept("plan_source_concept_id"),
    _concept("sponsor_concept_id"),
    _str("sponsor_source_value"),
    _concept("sponsor_source_concept_id"),
    _str("family_source_value"),
    _concept("stop_reason_concept_id"),
    _str("stop_reason_source_value"),
    _concept("stop_reason_source_concept_id"),
)

cost = Table(
    "cost",
    metadata,
    _id("cost_id", primary=True),
    _id("cost_event_id", required=True),
    _str("cost_domain_id", 20, required=True),
    _concept("cost_type_concept_id", required=True),
    _concept("currency_concept_id"),
    *(
        _number(n)
        for n in (
            "total_charge",
            "total_cost",
            "total_paid",
            "paid_by_payer",
            "paid_by_patient",
            "paid_patient_copay",
            "paid_patient_coinsurance",
            "paid_patient_deductible",
            "paid_by_primary",
            "paid_ingredient_cost",
            "paid_dispensing_fee",
        )
    ),
    _id("payer_plan_period_id"),
    _number("amount_allowed"),
    _concept("revenue_code_concept_id"),
    _str("revenue_code_source_value"),
    _concept("drg_concept_id"),
    _str("drg_source_value", 3),
)

drug_era = Table(
    "drug_era",
    metadata,
    _id("drug_era_id", primary=True),
    _id("person_id", required=True),
    _concept("drug_concept_id", required=True),
    _date("drug_era_start_date", required=True),
    _date("drug_era_end_date", required=True),
    _int("drug_exposure_count"),
    _int("gap_days"),
)

dose_era = Table(
    "dose_era",
    metadata,
    _id("dose_era_id", primary=True),
    _id("person_id", required=True),
    _concept("drug_concept_id", required=True),
    _concept("unit_concept_id", required=True),
    Column("dose_value", Double, nullable=False),
    _date("dose_era_start_date", required=True),
    _date("dose_era_end_date", required=True),
)

condition_era = Table(
    "condition_era",
    metadata,
    _id("condition_era_id", primary=True),
    _id("person_id", required=True),
    _concept("condition_concept_id", required=True),
    _date("condition_era_start_date", required=True),
    _date("condition_era_end_date", required=True),
    _int("condition_occurrence_count"),
)

episode = Table(
    "episode",
    metadata,
    _id("episode_id", primary=True),
    _id("person_id", required=True),
    _concept("episode_concept_id", required=True),
    _date("episode_start_date", required=True),
    _datetime("episode_start_datetime"),
    _date("episode_end_date"),
    _datetime("episode_end_datetime"),
    _id("episode_parent_id"),
    _int("episode_number"),
    _concept("episode_object_concept_id", required=True),
    _concept("episode_type_concept_id", required=True),
    _str("episode_source_value"),
    _concept("episode_source_concept_id"),
)

episode_event = Table(
    "episode_event",
    metadata,
    _id("episode_id", required=True),
    _id("event_id", required=True),
    _concept("episode_event_field_concept_id", required=True),
)

cdm_metadata = Table(
    "metadata",
    metadata,
    _id("metadata_id", primary=True),
    _concept("metadata_concept_id", required=True),
    _concept("metadata_type_concept_id", required=True),
    _str("name", 250, required=True),
    _str("value_as_string", 250),
    _concept("value_as_concept_id"),
    _number("value_as_number"),
    _date("metadata_date"),
    _datetime("metadata_datetime"),
)

cdm_source = Table(
    "cdm_source",
    metadata,
    _str("cdm_source_name", 255, required=True),
    _str("cdm_source_abbreviation", 25, required=True),
    _str("cdm_holder", 255, required=True),
    Column("source_description", Text),
    _str("source_documentation_reference", 255),
    _str("cdm_etl_reference", 255),
    _date("source_release_date", required=True),
    _date("cdm_release_date", required=True),
    _str("cdm_version", 10),
    _concept("cdm_version_concept_id", required=True),
    _str("vocabulary_version", 20, required=True),
)

#: MI-CDM imaging extension: one row per imaging study (series-level detail in the URIs).
image_occurrence = Table(
    "image_occurrence",
    metadata,
    _id("image_occurrence_id", primary=True),
    _id("person_id", required=True),
    _id("procedure_occurrence_id"),
    _id("visit_occurrence_id"),
    _concept("anatomic_site_concept_id"),
    Column("wadors_uri", Text),
    Column("local_path", Text),
    _date("image_occurrence_date", required=True),
    _str("image_study_uid", 250, required=True),
    _str("image_series_uid", 250),
    _concept("modality_concept_id", required=True),
)

#: FLIP's imaging provenance: one row per further DICOM instance of a series (the instance
#: that stands for the series is its image_occurrence row), so every file is traceable.
image_instance = Table(
    "image_instance",
    metadata,
    _id("image_instance_id", primary=True),
    _id("person_id", required=True),
    _id("image_occurrence_id", required=True),
    _str("sop_instance_uid", 64, required=True),
    _str("sop_class_uid", 64),
    _int("instance_number"),
    Column("wadors_uri", Text),
    Column("local_path", Text),
)

image_feature = Table(
    "image_feature",
    metadata,
    _id("image_feature_id", primary=True),
    _id("person_id", required=True),
    _id("image_occurrence_id", required=True),
    _concept("image_feature_event_field_concept_id"),
    _id("image_feature_event_id"),
    _concept("image_feature_concept_id", required=True),
    _concept("image_feature_type_concept_id", required=True),
    _concept("image_finding_concept_id"),
    _id("image_finding_id"),
    _concept("anatomic_site_concept_id"),
    _str("alg_system", 250),
    _datetime("alg_datetime"),
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

vocabulary = Table(
    "vocabulary",
    metadata,
    _str("vocabulary_id", 20, required=True),
    _str("vocabulary_name", 255, required=True),
    _str("vocabulary_reference", 255),
    _str("vocabulary_version", 255),
    _concept("vocabulary_concept_id", required=True),
)

domain = Table(
    "domain",
    metadata,
    _str("domain_id", 20, required=True),
    _str("domain_name", 255, required=True),
    _concept("domain_concept_id", required=True),
)

concept_class = Table(
    "concept_class",
    metadata,
    _str("concept_class_id", 20, required=True),
    _str("concept_class_name", 255, required=True),
    _concept("concept_class_concept_id", required=True),
)

relationship = Table(
    "relationship",
    metadata,
    _str("relationship_id", 20, required=True),
    _str("relationship_name", 255, required=True),
    _str("is_hierarchical", 1, required=True),
    _str("defines_ancestry", 1, required=True),
    _str("reverse_relationship_id", 20, required=True),
    _concept("relationship_concept_id", required=True),
)

concept_synonym = Table(
    "concept_synonym",
    metadata,
    _concept("concept_id", required=True),
    _str("concept_synonym_name", 1000, required=True),
    _concept("language_concept_id", required=True),
)

concept_ancestor = Table(
    "concept_ancestor",
    metadata,
    Column("ancestor_concept_id", Integer, primary_key=True, autoincrement=False),
    Column("descendant_concept_id", Integer, primary_key=True, autoincrement=False),
    Column("min_levels_of_separation", Integer, nullable=False),
    Column("max_levels_of_separation", Integer, nullable=False),
)

source_to_concept_map = Table(
    "source_to_concept_map",
    metadata,
    _str("source_code", 50, required=True),
    _concept("source_concept_id", required=True),
    _str("source_vocabulary_id", 20, required=True),
    _str("source_code_description", 255),
    _concept("target_concept_id", required=True),
    _str("target_vocabulary_id", 20, required=True),
    _date("valid_start_date", required=True),
    _date("valid_end_date", required=True),
    _str("invalid_reason", 1),
)

drug_strength = Table(
    "drug_strength",
    metadata,
    _concept("drug_concept_id", required=True),
    _concept("ingredient_concept_id", required=True),
    _number("amount_value"),
    _concept("amount_unit_concept_id"),
    _number("numerator_value"),
    _concept("numerator_unit_concept_id"),
    _number("denominator_value"),
    _concept("denominator_unit_concept_id"),
    _int("box_size"),
    _date("valid_start_date", required=True),
    _date("valid_end_date", required=True),
    _str("invalid_reason", 1),
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
    Column("records_skipped", Integer, nullable=False, default=0),
    Column("source_system", String(200)),
    Column("records_pruned", Integer, nullable=False, default=0),
    # Records of earlier runs a record of this run withdrew (entered in error, an A11…).
    Column("records_withdrawn", Integer, nullable=False, default=0),
    # The process that runs it, so that a later run can tell one whose process died.
    Column("host", String(255)),
    Column("pid", Integer),
)

#: Per ingest run, how many records each rule skipped, how many optional fields each rule
#: nulled with a warning, how many records carried each unmapped "system|code", and the
#: rows per table it pruned or withdrew (`kind` is "skipped", "warning", "unmapped",
#: "pruned" or "withdrawn").
ingest_tally = Table(
    "ingest_tally",
    metadata,
    _id("ingest_run_id", primary=True),
    Column("kind", String(10), primary_key=True),
    Column("rule", String(80), primary_key=True),
    Column("count", Integer, nullable=False),
)

#: `source_record.role` of the record that produced a CDM row (its rows are its own: a changed
#: record replaces them).
PRODUCED = "produced"
#: `source_record.role` of a record of another source system that names a row already stored
#: (a patient another source loaded, known by the site's person identifier): it is traced to
#: the row, and owns nothing of it.
CONFIRMS = "confirms"
#: `source_record.role` of a patient record whose person was merged into another (an HL7
#: A40): its cdm_id is the surviving person, so that what later comes under the retired
#: identifier files there.
MERGED = "merged"
#: `source_record.role` of a merge record (an HL7 A40 PID/MRG pair) that moved a person into
#: another: its cdm_id is the surviving person.
MERGES = "merges"
#: `source_record.role` of a patient record withdrawn (entered in error) whose person was
#: kept because rows still named it: the person goes once nothing names it.
WITHDRAWN = "withdrawn"
#: The roles of the provenance rows a record owns (its rows go when it changes or goes).
OWNED_ROLES = (PRODUCED, WITHDRAWN)

#: One row per (CDM row, source record): which source records, from which ingest runs,
#: produced or confirmed it; every source record behind a row has its own.
source_record = Table(
    "source_record",
    metadata,
    Column("cdm_table", String(40), primary_key=True),
    _id("cdm_id", primary=True),
    Column("source_system", String(200), primary_key=True),
    Column("record_key", String(200), primary_key=True),
    Column("location", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    _id("ingest_run_id"),
    #: The record's version when the source gives one (FHIR meta.versionId, lastUpdated).
    Column("source_version", String(100)),
    Column("role", String(10), nullable=False, server_default=PRODUCED),
    #: The source patient key the record was filed under (a fact's, a merge's old one):
    #: an unlink (HL7 A37) moves back what came under the unlinked identifier.
    Column("person_key", String(200)),
)

#: Re-ingest looks records up by key. DuckDB joins the keys without an index, and an
#: index there would only slow every insert, so it is built on the other databases.
Index("ix_source_record_key", source_record.c.source_system, source_record.c.record_key).ddl_if(
    dialect=("postgresql", "sqlite", "mysql", "mariadb")
)

#: The records a source system withdrew (entered in error, refuted, cancelled…), by key,
#: with the rule that said so: a record of a later run naming a withdrawn patient is
#: quarantined naming that rule. A record loaded again under the key leaves it, unless it
#: is older than the withdrawing record's version (then it stays withdrawn).
withdrawal = Table(
    "withdrawal",
    metadata,
    Column("source_system", String(200), primary_key=True),
    Column("record_key", String(200), primary_key=True),
    Column("rule", String(80), nullable=False),
    _id("ingest_run_id"),
    Column("source_version", String(100)),
)

#: Discharges that named no visit (an HL7 A03 without PV1-19) read while their patient had
#: no one open visit of the source: each waits here, by key, until the patient has one
#: (an admission read later), which it then ends as if read after it. Times are ISO text
#: (a date stays a date). Kind `cancel`: a cancel-discharge naming no visit (an HL7 A13
#: without PV1-19), kept to drop the discharges it cancels read later.
pending_discharge = Table(
    "pending_discharge",
    metadata,
    Column("source_system", String(200), primary_key=True),
    Column("record_key", String(200), primary_key=True),
    Column("person_key", String(200), nullable=False),
    Column("visit_start", String(32)),
    Column("admitted", Integer, nullable=False),
    Column("visit_end", String(32)),
    Column("source_value", String(50), nullable=False),
    Column("location", Text, nullable=False),
    Column("raw", LargeBinary),
    Column("source_version", String(100)),
    _id("ingest_run_id"),
    Column("kind", String(10), nullable=False, server_default="discharge"),
)

#: FLIP's store schema version; `Store.create()` migrates older stores up to it.
#: 7: source_record's key is (cdm_table, cdm_id, source_system, record_key), with its role.
#: 8: source_record.person_key; the withdrawal table; merged-away identifiers of stores
#: merged before 8 traced to their survivor (role merged).
#: 9: ingest_run.records_withdrawn; the pending_discharge table.
#: 10: pending_discharge.kind (kept HL7 A13s without visit number).
#: 11: withdrawal.source_version (an HL7 A01 read after the newer A11 cancelling it).
SCHEMA_VERSION = 11

flip_schema = Table(
    "flip_schema",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("migrated_at", DateTime, nullable=False),
)

#: Per-source state kept between runs, e.g. the `_lastUpdated` high-water mark of a FHIR server.
source_state = Table(
    "source_state",
    metadata,
    Column("source_system", String(200), primary_key=True),
    Column("name", String(60), primary_key=True),
    Column("value", Text, nullable=False),
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

#: The national data opt-out: a keyed hash (HMAC-SHA256) of each identifier (NHS number, MRN)
#: of a patient who opted out of research use, as the site's IG team's file lists them.
optout = Table(
    "optout",
    metadata,
    Column("identifier_hash", String(64), primary_key=True),
)

#: The store's own key for the opt-out hashes (one row, made when a list is first loaded).
optout_key = Table(
    "optout_key",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("key", String(64), nullable=False),
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

    @property
    def datetime(self) -> str:
        """The column that keeps the time of day of the date column."""
        return f"{self.date.removesuffix('_date')}_datetime"


#: Event tables and their column names.
EVENT_COLUMNS: dict[str, EventColumns] = {
    "condition_occurrence": EventColumns("condition", "condition_start_date", None),
    "measurement": EventColumns("measurement", "measurement_date", "value_as_number"),
    "observation": EventColumns("observation", "observation_date", "value_as_number"),
    "visit_occurrence": EventColumns("visit", "visit_start_date", None),
    "drug_exposure": EventColumns("drug", "drug_exposure_start_date", None),
    "procedure_occurrence": EventColumns("procedure", "procedure_date", None),
    "device_exposure": EventColumns("device", "device_exposure_start_date", None),
    "specimen": EventColumns("specimen", "specimen_date", None),
    "image_occurrence": EventColumns("modality", "image_occurrence_date", None),
}

#: Where a coded event lands, by the domain of its standard concept.
DOMAIN_TABLES: dict[str, str] = {
    "Condition": "condition_occurrence",
    "Measurement": "measurement",
    "Observation": "observation",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Device": "device_exposure",
    "Specimen": "specimen",
}

#: The clinical tables every store has, in the order a report lists them.
CLINICAL_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "death",
    "note",
    "note_nlp",
    "specimen",
    "fact_relationship",
    "image_occurrence",
    "image_instance",
    "image_feature",
)


def _not_on_duckdb(
    ddl: object, target: object, bind: object, dialect: Dialect, **kw: object
) -> bool:
    return dialect.name != "duckdb"


#: On DuckDB the tables an ingest writes carry no primary key. Its index would check every
#: inserted row and double the cost of each commit, while identity is already kept by
#: source_record (a record's rows are replaced, never added twice). Other databases keep it.
for _name in (*CLINICAL_TABLES, "source_record"):
    metadata.tables[_name].primary_key.ddl_if(callable_=_not_on_duckdb)
