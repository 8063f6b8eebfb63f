"""The codes the dermatology world writes: SNOMED CT diagnoses, LOINC labs, RxNorm drugs.

Severity scores (PASI, EASI, DLQI, IGA) and the Fitzpatrick skin type travel under
FLIP's own code system: the world ships no LOINC or SNOMED CT code for them that we
could check, and a site maps them to its own (see docs/site-setup.md, "Dermatology").
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
#: FLIP's code system for the clinician scores and the skin type.
SCORE_SYSTEM = "urn:flip:dermatology:score"

#: Diagnoses: name -> (SNOMED CT code, display).
DIAGNOSES: dict[str, tuple[str, str]] = {
    "psoriasis": ("9014002", "Psoriasis"),
    "eczema": ("24079001", "Atopic dermatitis"),
    "hs": ("59393003", "Hidradenitis suppurativa"),
}
PSORIATIC_ARTHRITIS = ("33339001", "Psoriatic arthritis")

#: Scores: name -> (code in SCORE_SYSTEM, unit, display); scores have no unit.
SCORES: dict[str, tuple[str, str, str]] = {
    "pasi": ("PASI", "", "Psoriasis Area and Severity Index"),
    "easi": ("EASI", "", "Eczema Area and Severity Index"),
    "dlqi": ("DLQI", "", "Dermatology Life Quality Index"),
    "iga": ("IGA", "", "Investigator Global Assessment"),
    "fitzpatrick": ("FITZPATRICK", "", "Fitzpatrick skin type"),
}

#: Laboratory tests: name -> (LOINC code, UCUM unit, display).
LABS: dict[str, tuple[str, str, str]] = {
    "crp": ("1988-5", "mg/L", "C reactive protein"),
    "esr": ("4537-7", "mm/h", "Erythrocyte sedimentation rate"),
    "wbc": ("6690-2", "10*3/uL", "Leukocytes"),
    "haemoglobin": ("718-7", "g/dL", "Hemoglobin"),
    "alt": ("1742-6", "U/L", "Alanine aminotransferase"),
    "creatinine": ("14682-9", "umol/L", "Creatinine"),
    "bmi": ("39156-5", "kg/m2", "Body mass index"),
}

#: Treatments: name -> (RxNorm ingredient code, display, biologic).
DRUGS: dict[str, tuple[str, str, bool]] = {
    "methotrexate": ("6851", "methotrexate", False),
    "ciclosporin": ("3008", "cyclosporine", False),
    "acitretin": ("16818", "acitretin", False),
    "adalimumab": ("327361", "adalimumab", True),
    "ustekinumab": ("847083", "ustekinumab", True),
    "secukinumab": ("1599788", "secukinumab", True),
    "dupilumab": ("1876376", "dupilumab", True),
}
