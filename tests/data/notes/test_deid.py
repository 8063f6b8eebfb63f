"""De-identification: measured on a seeded world's labelled letters and on letters written here."""

from __future__ import annotations

import pytest

from flip.data.notes.deid import deidentify, find_phi, nhs_valid, parse_date
from flip.data.notes.score import read_labelled, score

HAND_WRITTEN = """Dear Dr Patel,
Re: Mr J. Smith, DOB 3/4/1961, NHS No. 943 476 5919, MRN: RX12345678
Flat 2, 14 Queen's Park Road, Manchester M14 5TQ. Tel: 0161 496 0000, mobile +44 7700 900123
Email john.smith@example.org. Seen on 12th March 2023 with his wife Mary Smith.
Chronic plaque psoriasis, no psoriatic arthritis. Mother has eczema. Follow up 2024-01-15.
Yours sincerely, Prof. Anne O'Neill"""

IDENTIFIERS = [
    "Patel", "J. Smith", "3/4/1961", "943 476 5919", "RX12345678", "14 Queen's Park Road",
    "Manchester", "M14 5TQ", "0161 496 0000", "+44 7700 900123", "john.smith@example.org",
    "12th March 2023", "Mary Smith", "2024-01-15", "Anne O'Neill", "Smith",
]  # fmt: skip


def test_recall_on_the_seeded_worlds_letters(labelled_letters):
    rows = [row for path in labelled_letters for row in read_labelled(path)]
    figures = score(rows)
    assert figures["ALL"]["labelled"] > 1000
    assert figures["ALL"]["recall"] >= 0.95
    for kind in ("NHS_NUMBER", "POSTCODE", "PHONE"):
        assert figures[kind]["recall"] >= 0.99, (kind, figures[kind])
    assert figures["ALL"]["precision"] >= 0.95


def test_hand_written_letter_keeps_no_identifier_and_keeps_the_clinical_text():
    clean = deidentify(HAND_WRITTEN)
    for identifier in IDENTIFIERS:
        assert identifier not in clean, identifier
    assert "no psoriatic arthritis" in clean
    assert "Mother has eczema" in clean
    assert "[NHS_NUMBER]" in clean and "[POSTCODE]" in clean and "[EMAIL]" in clean


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Tel: 0161 496 0000", "PHONE"),
        ("call (020) 7946 0018 today", "PHONE"),
        ("NHS No. 943 476 5919", "NHS_NUMBER"),
        ("ref 9434765919 on file", "NHS_NUMBER"),
        ("lives at 5 Mill Lane, Ely CB7 4AB", "POSTCODE"),
        ("seen by Mrs A. B. Okafor", "NAME"),
        ("DOB 3/4/1961", "DATE"),
        ("on 4 Sept 2020", "DATE"),
    ],
)
def test_formats_the_generator_does_not_write(text, kind):
    assert kind in {s.kind for s in find_phi(text)}


def test_numbers_that_are_not_identifiers_stay():
    text = "PASI 12.4, DLQI 9, BMI 31.2, CRP 14 mg/L, 5 mg daily; ref 1234567890 checked."
    assert not nhs_valid("1234567890")
    assert find_phi(text) == []


def test_nhs_mod_11_check():
    assert nhs_valid("943 476 5919")
    assert not nhs_valid("943 476 5918")
    assert not nhs_valid("94347659")


def test_shifted_dates_move_by_the_persons_offset():
    assert deidentify("DOB 3/4/1961; seen 29 Aug 2001.", shift_days=-3) == (
        "DOB 1961-03-31; seen 2001-08-26."
    )
    assert parse_date("31/02/2001") is None
    assert deidentify("seen 31/02/2001", shift_days=5) == "seen [DATE]"
