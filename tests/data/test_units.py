"""Units: UCUM unit concepts, lab spellings, canonical units per concept, plausibility, coverage."""

import csv
from datetime import date

import orjson
import pytest
from sqlalchemy import insert, select

from flip.data.cdm import schema
from flip.data.ingest import ingest_path
from flip.data.terminology import Vocabulary, starter_folder
from flip.data.terminology.units import (
    CANONICAL,
    UCUM_CONCEPTS,
    normalize_unit,
    to_canonical,
    unit_concept_id,
)
from flip.data.validate.distributions import unit_coverage
from flip.data.validate.plausibility import value_problem
from flip.synth.world import MEASUREMENTS
from tests.data.accounting import assert_accounted

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _starter() -> dict[tuple[str, str], tuple[int, str]]:
    with (starter_folder() / "CONCEPT.csv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return {
            (r["vocabulary_id"], r["concept_code"]): (int(r["concept_id"]), r["concept_name"])
            for r in rows
        }


@pytest.mark.parametrize(
    ("sent", "ucum"),
    [
        ("mg/dl", "mg/dL"),
        ("mmol/l", "mmol/L"),
        ("umol/L", "umol/L"),
        ("\u00b5mol/L", "umol/L"),  # micro sign
        ("\u03bcmol/L", "umol/L"),  # Greek mu
        ("x10^9/L", "10*9/L"),
        ("10^9/l", "10*9/L"),
        ("G/l", "10*9/L"),
        ("g/l", "g/L"),
        ("bpm", "/min"),
        ("mmHg", "mm[Hg]"),
        ("deg C", "Cel"),
        ("\u00b0F", "[degF]"),
        ("lbs", "[lb_av]"),
        ("kg/m\u00b2", "kg/m2"),
        ("[U]/L", "U/L"),
        ("furlongs", None),
    ],
)
def test_lab_spellings_normalise_to_ucum(sent, ucum):
    assert normalize_unit(sent) == ucum


def test_every_common_unit_is_a_starter_concept_with_its_ohdsi_id():
    starter = _starter()
    for code, (concept_id, name) in UCUM_CONCEPTS.items():
        assert starter[("UCUM", code)] == (concept_id, name)
    # the ids the issue names, as OHDSI assigns them
    expected = {"mg/dL": 8840, "mmol/L": 8753, "g/L": 8636, "mg/L": 8751, "%": 8554, "kg": 9529}
    expected |= {"cm": 8582, "Cel": 586323, "/min": 8541, "mm[Hg]": 8876, "10*9/L": 9444}
    assert {code: UCUM_CONCEPTS[code][0] for code in expected} == expected


def test_vocabulary_unit_prefers_the_stores_own_ucum_concepts(store):
    vocab = Vocabulary.from_store(store)
    assert vocab.unit("mg/dl") == 8840 and vocab.unit("x10^9/L") == 9444
    assert vocab.unit("furlongs") == 0 and vocab.unit(None) == 0
    athena = dict(vocab.by_code)
    athena[("UCUM", "mg/dL")] = (99999, "Unit", True)
    assert Vocabulary(athena, vocab.maps_to, vocab.domains).unit("mg/dl") == 99999


@pytest.mark.parametrize(
    ("concept_id", "value", "unit", "expected", "canonical"),
    [
        (3004501, 5.5, "mmol/L", 99.09, "mg/dL"),  # glucose, 180.16 g/mol
        (3020564, 1.0, "mg/dL", 88.40, "umol/L"),  # creatinine, 113.12 g/mol
        (3016723, 88.4, "umol/L", 1.0, "mg/dL"),
        (3027114, 5.0, "mmol/L", 193.33, "mg/dL"),  # cholesterol, 386.65 g/mol
        (3007070, 1.0, "mmol/L", 38.67, "mg/dL"),  # HDL
        (3022192, 1.0, "mmol/L", 88.57, "mg/dL"),  # triglycerides as triolein
        (3004410, 48, "mmol/mol", 6.54, "%"),  # HbA1c, IFCC -> NGSP master equation
        (3000963, 135, "g/L", 13.5, "g/dL"),  # haemoglobin
        (3020891, 98.6, "[degF]", 37.0, "Cel"),
        (3025315, 185, "[lb_av]", 83.91, "kg"),
        (3036277, 70, "in", 177.8, "cm"),
        (3004249, 16, "kPa", 120.01, "mm[Hg]"),
        (3019550, 140, "mEq/L", 140.0, "mmol/L"),
        (3019550, 140, "mmol/l", 140.0, "mmol/L"),
    ],
)
def test_values_convert_to_their_concepts_canonical_unit(
    concept_id, value, unit, expected, canonical
):
    converted, code = to_canonical(concept_id, value, unit)
    assert code == canonical == CANONICAL[concept_id][1]
    assert converted == pytest.approx(expected, abs=0.01)


def test_a_unit_with_no_known_factor_is_kept_as_sent():
    assert to_canonical(3004501, 7.0, "mg/g") == (7.0, "mg/g")
    assert to_canonical(123, 7.0, "mg/dl") == (7.0, "mg/dL")


def test_starter_concepts_carry_the_property_their_codes_name():
    starter = _starter()
    mass = {"2093-3", "2085-9", "2160-0", "1975-2"}
    moles = {"14647-2", "14682-9", "14631-6"}
    for code in mass:
        assert "[Mass/volume]" in starter[("LOINC", code)][1], code
    for code in moles:
        assert "[Moles/volume]" in starter[("LOINC", code)][1], code
    # the synthetic sites send each analyte under the code whose property its unit has,
    # except HDL, which they send as many labs do (mass code, mmol/L) to exercise conversion
    for name, (code, unit) in MEASUREMENTS.items():
        concept_id = starter[("LOINC", code)][0]
        if concept_id in CANONICAL and name != "hdl":
            assert to_canonical(concept_id, 1.0, unit) == (1.0, unit), name


def test_plausibility_compares_in_the_canonical_unit():
    assert value_problem(3020891, 98.6, "[degF]") is None  # 37 Cel
    assert value_problem(3016723, 250, "umol/L") is None  # 2.8 mg/dL
    rule, message = value_problem(3016723, 250000, "umol/L")
    assert rule == "plausibility.value_range" and "mg/dL" in message
    assert value_problem(3004249, 120, "mmHg") is None
    assert value_problem(3004249, 120, "mg/dL")[0] == "plausibility.unit_mismatch"


def _observation(oid: str, loinc: str, quantity: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2016-03-28",
        "valueQuantity": quantity,
    }


#: Values and units of the FHIR R4 specification's own Observation examples (CC0):
#: body-weight (185 [lb_av]), body-temperature (36.5 Cel), heart-rate (44 /min) and the
#: vital-signs body-height example (66.899 [in_i]); a glucose sent in mmol/L beside them.
SPEC_EXAMPLES = [
    _observation(
        "body-weight", "29463-7", {"value": 185, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}
    ),
    _observation(
        "body-temperature", "8310-5", {"value": 36.5, "unit": "C", "system": UCUM, "code": "Cel"}
    ),
    _observation(
        "heart-rate",
        "8867-4",
        {"value": 44, "unit": "beats/minute", "system": UCUM, "code": "/min"},
    ),
    _observation(
        "body-height", "8302-2", {"value": 66.899, "unit": "in", "system": UCUM, "code": "[in_i]"}
    ),
    _observation(
        "glucose", "2345-7", {"value": 6.3, "unit": "mmol/l", "system": UCUM, "code": "mmol/L"}
    ),
]


def test_fhir_spec_examples_load_converted_with_what_was_sent_kept(store, tmp_path):
    patient = {
        "resourceType": "Patient",
        "id": "example",
        "gender": "male",
        "birthDate": "1974-12-25",
    }
    path = tmp_path / "obs.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [patient, *SPEC_EXAMPLES]) + b"\n")
    report = ingest_path(store, "fhir", path)
    assert_accounted(store, report)
    assert report.quarantined == 0, report.rules
    m = schema.measurement
    with store.connect() as conn:
        rows = {
            r.measurement_concept_id: r
            for r in conn.execute(
                select(
                    m.c.measurement_concept_id,
                    m.c.value_as_number,
                    m.c.unit_concept_id,
                    m.c.value_source_value,
                    m.c.unit_source_value,
                )
            )
        }
    weight, height, glucose = rows[3025315], rows[3036277], rows[3004501]
    assert (
        weight.value_as_number == pytest.approx(83.91, abs=0.01) and weight.unit_concept_id == 9529
    )
    assert (weight.value_source_value, weight.unit_source_value) == ("185", "[lb_av]")
    assert (
        height.value_as_number == pytest.approx(169.92, abs=0.01) and height.unit_concept_id == 8582
    )
    assert (
        glucose.value_as_number == pytest.approx(113.5, abs=0.1) and glucose.unit_concept_id == 8840
    )
    assert rows[3020891].unit_concept_id == 586323 and rows[3027018].unit_concept_id == 8541
    assert ingest_path(store, "fhir", path).loaded == 0  # a re-run changes nothing


def test_unit_coverage_counts_rows_with_a_unit_concept_per_concept(store):
    m = schema.measurement
    rows = [
        (1, 3004501, 100.0, 8840),
        (2, 3004501, 90.0, 0),
        (3, 3004501, None, 0),  # no number: not counted
        (4, 3019550, 140.0, 8753),
    ]
    with store.begin() as conn:
        conn.execute(
            insert(m),
            [
                {
                    "measurement_id": i,
                    "person_id": 1,
                    "measurement_concept_id": c,
                    "measurement_date": date(2020, 1, 1),
                    "measurement_type_concept_id": 32817,
                    "value_as_number": v,
                    "unit_concept_id": u,
                }
                for i, c, v, u in rows
            ],
        )
    with store.connect() as conn:
        coverage = {c["concept_id"]: c for c in unit_coverage(conn)["by_concept"]}
    assert (coverage[3004501]["numeric"], coverage[3004501]["with_unit"]) == (2, 1)
    assert coverage[3004501]["share"] == 0.5 and coverage[3019550]["share"] == 1.0


@pytest.mark.parametrize(
    ("sent", "ucum"),
    [
        ("x10^12/L", "10*12/L"),  # red cells
        ("T/L", "10*12/L"),
        ("uIU/mL", "u[IU]/mL"),  # TSH
        ("mcg/mL", "ug/mL"),
        ("GM/DL", "g/dL"),
        ("mg%", "mg/dL"),
        ("/HPF", "/[HPF]"),
    ],
)
def test_more_spellings_labs_send_have_unit_concepts(sent, ucum):
    assert normalize_unit(sent) == ucum and UCUM_CONCEPTS[ucum][0] > 0


def test_converted_values_carry_no_float_noise():
    assert to_canonical(3025315, 185, "[lb_av]") == (83.91458845, "kg")
    assert to_canonical(3016723, 88.4, "umol/L") == (0.9999808, "mg/dL")
    assert to_canonical(3004501, 5.5, "mmol/L") == (99.088, "mg/dL")
    assert to_canonical(3025315, 70.123456789012345, "kg")[0] == 70.123456789012345  # as sent


def test_haemoglobin_in_mmol_per_litre_converts_instead_of_being_quarantined():
    value, unit = to_canonical(3000963, 8.5, "mmol/L")  # Dutch and Nordic labs
    assert unit == "g/dL" and value == pytest.approx(13.70, abs=0.01)
    assert value_problem(3000963, 8.5, "mmol/L") is None


def test_every_canonical_concept_has_a_plausible_range_in_its_canonical_unit():
    for concept_id, canonical in CANONICAL.items():
        assert 0 <= canonical.low < canonical.high, concept_id
    # a value that overflows on conversion is implausible, not stored as infinity
    assert value_problem(3028437, 1e308, "mmol/L")[0] == "plausibility.value_range"


def _measurements(store) -> dict[str, tuple]:
    m = schema.measurement
    cols = (m.c.value_as_number, m.c.unit_concept_id, m.c.unit_source_value)
    cols += (m.c.value_source_value, m.c.operator_concept_id)
    with store.connect() as conn:
        rows = conn.execute(select(m.c.measurement_source_value, *cols)).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_a_missing_or_unreadable_unit_loads_with_a_warning_not_a_quarantine(store, tmp_path):
    patient = {"resourceType": "Patient", "id": "example", "birthDate": "1974-12-25"}
    resources = [
        patient,
        _observation("bp", "8480-6", {"value": 120}),  # no unit at all
        _observation("glucose", "2345-7", {"value": 100, "unit": "mg per dL"}),
    ]
    path = tmp_path / "obs.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    report = ingest_path(store, "fhir", path)
    assert_accounted(store, report)
    assert report.quarantined == 0 and report.loaded == 3, report.rules
    assert report.warnings["unit.unreadable"] == 1
    rows = _measurements(store)
    assert rows["8480-6"][:3] == (120.0, 0, None)
    assert rows["2345-7"][:3] == (100.0, 0, "mg per dL")


def test_fhir_comparator_survives_conversion_and_a_non_ucum_unit_code_falls_back_to_text(
    store, tmp_path
):
    patient = {"resourceType": "Patient", "id": "example", "birthDate": "1974-12-25"}
    creatinine = {"value": 0.5, "comparator": "<", "unit": "mg/dL", "system": UCUM}
    creatinine["code"] = "mg/dL"
    snomed = {"value": 100, "unit": "mg/dL", "system": "http://snomed.info/sct"}
    snomed["code"] = "258797006"  # SNOMED CT's mg/dL
    resources = [
        patient,
        _observation("creatinine", "14682-9", creatinine),  # umol/L concept
        _observation("glucose", "2345-7", snomed),
    ]
    path = tmp_path / "obs.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in resources) + b"\n")
    report = ingest_path(store, "fhir", path)
    assert_accounted(store, report)
    assert report.quarantined == 0, report.rules
    rows = _measurements(store)
    assert rows["14682-9"] == (44.2008486563, 8749, "mg/dL", "<0.5", 4171756)
    assert rows["2345-7"][:3] == (100.0, 8840, "mg/dL")
    assert ingest_path(store, "fhir", path).loaded == 0


def test_hl7_units_in_obx6_text_component_and_escaped_powers(store, tmp_path):
    segments = [
        "MSH|^~\\&|LAB|HOSP|FLIP|SITE|20200101120000||ORU^R01|MSG1|P|2.5.1",
        "PID|1||12345^^^HOSP^MR||DOE^JOHN||19700101|M",
        "OBR|1||ORD1|24331-1^Lipid panel^LN|||20200101100000",
        "OBX|1|NM|2345-7^Glucose^LN||5.5|mmol/L^millimole per liter^UCUM|||||F",
        "OBX|2|NM|8480-6^Systolic^LN||120|^mmHg^UCUM|||||F",  # text component only
        "OBX|3|NM|777-3^Platelets^LN||250|10\\S\\9/L|||||F",  # escaped ^
        "OBX|4|SN|14682-9^Creatinine^LN||<^0.5|mg/dL^mg/dL^UCUM|||||F",
        "OBX|5|NM|718-7^Haemoglobin^LN||8.5|mmol/L|||||F",
    ]
    path = tmp_path / "oru.hl7"
    path.write_text("\r".join(segments) + "\r")
    report = ingest_path(store, "hl7v2", path)
    assert_accounted(store, report)
    assert report.quarantined == 0 and report.loaded >= 5, report.rules
    rows = _measurements(store)
    assert rows["2345-7"][:3] == (99.088, 8840, "mmol/L")
    assert rows["8480-6"][:3] == (120.0, 8876, "mmHg")
    assert rows["777-3"][:3] == (250.0, 8848, "10^9/L")
    assert rows["14682-9"] == (44.2008486563, 8749, "mg/dL", "<0.5", 4171756)
    assert rows["718-7"][:2] == (13.697325, 8713)


def test_the_plausible_range_is_the_one_canonical_table_holds(monkeypatch):
    glucose = CANONICAL[3004501]
    assert value_problem(3004501, 150, "mg/dL") is None
    monkeypatch.setitem(CANONICAL, 3004501, glucose._replace(high=100))
    assert value_problem(3004501, 150, "mg/dL")[0] == "plausibility.value_range"
    assert value_problem(3004501, 5.0, "mmol/L") is None  # 90 mg/dL
    assert value_problem(3004501, 6.0, "mmol/L")[0] == "plausibility.value_range"  # 108 mg/dL


@pytest.mark.parametrize(
    ("sent", "concept_id"),
    [
        ("mIU/L", 9040),  # TSH
        ("mU/L", 44777578),
        ("kU/L", 8810),  # IgE
        ("mg/mmol", 44777612),  # albumin/creatinine
        ("mg/g{creat}", 9017),
        ("cells/uL", 8784),  # CD4 count
        ("M/uL", 8815),  # red cells, million per microliter
        ("L/min", 8698),
        ("s", 8555),
        ("min", 8550),
        ("h", 8505),
        ("d", 8512),
    ],
)
def test_units_labs_and_monitors_send_have_their_ohdsi_concepts(sent, concept_id):
    assert unit_concept_id(normalize_unit(sent)) == concept_id
