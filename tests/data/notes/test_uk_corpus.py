"""De-identification on hand-written UK letter fragments (not the generator's), and the leak and
over-redaction shapes a review found."""

from __future__ import annotations

import json

import pytest

from flip.data.notes.deid import deidentify, find_phi
from flip.data.notes.score import parse_marked, read_labelled, score
from tests.data.notes.corpus import HERE, uk_letters


def test_the_corpus_parses_into_exact_spans():
    docs = uk_letters()
    assert len(docs) >= 8
    text, spans = parse_marked("Dear Dr [[NAME|Ahmed]], seen [[DATE|2 May 2021]].")
    assert [text[s.start : s.end] for s in spans] == ["Ahmed", "2 May 2021"]
    assert sum(len(s) for _, s in docs) >= 90
    assert read_labelled(HERE / "uk_letters.txt") == docs


def test_an_unclosed_mark_names_the_file_and_document(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Dear Dr [[NAME|Ahmed]]\n====\nSeen [[DATE|2 May\n")
    with pytest.raises(ValueError, match=r"mine\.txt: document 2: an unclosed"):
        read_labelled(path)


def test_precision_and_recall_on_the_hand_written_letters():
    figures = score(uk_letters())
    assert figures["ALL"]["precision"] >= 0.95, figures["ALL"]
    assert figures["ALL"]["recall"] >= 0.95, figures["ALL"]
    for kind in ("DATE", "PHONE", "POSTCODE", "NHS_NUMBER", "MRN", "EMAIL", "ADDRESS"):
        assert figures[kind]["recall"] == 1.0, (kind, figures[kind])
    assert figures["NAME"]["recall"] >= 0.9, figures["NAME"]


def test_precision_and_recall_on_the_held_out_letters():
    """Written after the rules; first scored at recall 0.893 (6 misses), then the rules took
    5 of them. A day and month as "1/10" stays (it reads as a score, like "pain 3/10")."""
    figures = score(uk_letters("uk_letters_heldout.txt"))
    assert figures["ALL"]["labelled"] >= 50
    assert figures["ALL"]["precision"] >= 0.95, figures["ALL"]
    assert figures["ALL"]["recall"] >= 0.95, figures["ALL"]


@pytest.mark.parametrize(
    ("text", "identifier", "kind"),
    [
        ("Tel +44 (0)20 7946 0958 today", "7946 0958", "PHONE"),
        ("Home: +44 (0)113 496 0873", "496 0873", "PHONE"),
        ("Tel: +44 (0)113 496 0018  Fax", "+44 (0)113 496 0018", "PHONE"),
        ("Seen by dr lindqvist today", "dr lindqvist", "NAME"),
        ("London sw1a 1aa", "sw1a 1aa", "POSTCODE"),
        ("London SW1A1AA", "SW1A1AA", "POSTCODE"),
        ("Leeds ls5 3ht", "ls5 3ht", "POSTCODE"),
        ("113 Church Road, Leeds ls24 1hr  Tel:", "ls24 1hr", "POSTCODE"),
        ("He was seen with John Smith today.", "John Smith", "NAME"),
        ("With best wishes\n\nJane Doe, Consultant Dermatologist", "Jane Doe", "NAME"),
        ("Thanks.\nJane Doe\nConsultant Dermatologist", "Jane Doe", "NAME"),
        ("Consultant: dr smith", "smith", "NAME"),
        ("her daughter Susan came too", "Susan", "NAME"),
        ("Next of kin: Raj Sharma (husband)", "Raj Sharma", "NAME"),
        ("DOB 2021/03/04", "2021/03/04", "DATE"),
        ("seen on Tuesday 4th March", "4th March", "DATE"),
        ("admitted 4th of March 2021", "4th of March 2021", "DATE"),
        ("flared since March 2021", "March 2021", "DATE"),
        ("discharged 04.03.21", "04.03.21", "DATE"),
        ("bloods on Monday 12 June", "12 June", "DATE"),
        ("NHS: 424-307-0555", "424-307-0555", "NHS_NUMBER"),
        ("MRN: RR8 1234567", "RR8 1234567", "MRN"),
        ("Hospital number: J1234567X", "J1234567X", "MRN"),
        ("email jane.doe@nhs.net", "jane.doe@nhs.net", "EMAIL"),
        ("He lives at 88 Victoria Road, Headingley and", "88 Victoria Road", "ADDRESS"),
        ("Flat 3, Kirkstall House, 4 Abbey Road, Leeds", "Kirkstall House", "ADDRESS"),
        ("Chapel Allerton Hospital\nChapeltown Road\nLeeds LS7 4ZZ", "Chapeltown Road", "ADDRESS"),
        ("Oakwood Surgery\n12 Oakwood Lane\nLeeds\nLS8 2QX", "Leeds", "ADDRESS"),
        ("Ms G Adeyemi\nFlat 12\nClarendon Court\n", "Flat 12", "ADDRESS"),
        ("Patient: Bilal Hussain (12-Mar-1995)", "12-Mar-1995", "DATE"),
        ("burning after the session on Friday 9th.", "Friday 9th", "DATE"),
        ("Seen by: Sr Hughes (CNS)", "Hughes", "NAME"),
        ("Summary for GP: Harjit Singh Gill, 05.11.1972", "Gill", "NAME"),
    ],
)
def test_shapes_that_leaked(text, identifier, kind):
    assert identifier not in deidentify(text)
    start = text.index(identifier)
    assert any(s.kind == kind and s.start <= start < s.end for s in find_phi(text)), find_phi(text)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Re: Mr Tom Brown\nBrown plaques on the shins; brown scale.", "brown scale"),
        ("Re: Mr Tom Brown\nBrown plaques on the shins; brown scale.", "Brown plaques"),
        ("Re: Mr Mark Jones\nMark the lesion for biopsy.", "Mark the lesion"),
        ("Re: Mrs May Smith\nWill review in May.", "review in May"),
        ("Re: Mrs Rose Green\nRose-coloured erythema; green-grey scale.", "Rose-coloured"),
        ("Re: Mrs Rose Green\nRose-coloured erythema; green-grey scale.", "green-grey"),
        ("Re: Mr Oliver Green\nGreen-grey scale on the elbows.", "Green-grey"),
        ("Hope to start a biologic. White patches. Young man.", "Hope to start"),
        ("Dear Colleague,\nThank you.", "Dear Colleague"),
        ("Ward sister: Sister Jones. Her sister has psoriasis.", "Her sister has psoriasis"),
        ("Bleep 4412, PASI 14.2, DLQI 18, Room 6, Outpatients B at 10:30.", "Bleep 4412"),
        ("5 mg daily; 1 may be taken at night.", "1 may be taken"),
        ("q4 2hr observations; x2 3mg doses", "x2 3mg doses"),
        ("Clinic 3, Victoria Wing, near Victoria Park", "Victoria Park"),
        ("Patient Information Leaflet given on methotrexate.", "Information Leaflet"),
    ],
)
def test_words_that_equal_names_stay_outside_a_name_context(text, kept):
    assert kept in deidentify(text)


def test_a_phone_number_is_not_read_as_an_nhs_number_inside_it():
    """+44 (0)113 496 0018 holds ten digits with a valid NHS check digit; it is one phone."""
    spans = find_phi("Tel: +44 (0)113 496 0018  Fax")
    assert [(s.kind, s.start) for s in spans] == [("PHONE", 5)]


def test_the_score_command_reads_hand_marked_letters():
    from typer.testing import CliRunner

    from flip.cli.app import app

    held_out = str(HERE / "uk_letters_heldout.txt")
    result = CliRunner().invoke(app, ["site", "notes", "score", held_out, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    docs = uk_letters("uk_letters_heldout.txt")
    assert figures["ALL"]["labelled"] == sum(len(spans) for _, spans in docs)


def test_precision_and_recall_on_the_second_held_out_letters():
    """Written by a review without reading the letters above; first scored at precision
    0.981, recall 0.820 (35 misses: sentence-initial names that are also words, ages over
    89, "Mar-24", extensions, streets without a number, Welsh dates, accented names); the
    rules then took all but a house name and a village given without street or postcode."""
    figures = score(uk_letters("uk_letters_heldout2.txt"))
    assert figures["ALL"]["labelled"] >= 190
    assert figures["ALL"]["precision"] >= 0.99, figures["ALL"]
    assert figures["ALL"]["recall"] >= 0.98, figures["ALL"]
    for kind in ("NAME", "DATE", "AGE", "PHONE", "MRN", "NHS_NUMBER", "POSTCODE", "EMAIL"):
        assert figures[kind]["recall"] == 1.0, (kind, figures[kind])


@pytest.mark.parametrize(
    ("text", "identifier", "kind"),
    [
        ("Re: Rose Whitaker\nRose reports more plaques.", "Rose reports", "NAME"),
        ("Re: Mrs May Robson\nhands. May is keen to avoid injections.", "May is", "NAME"),
        ("From: Joy Mensah\nThanks\nJoy\nPractice Nurse", "Joy\nPractice", "NAME"),
        ("Her granddaughter, Rose, will collect it.", "Rose", "NAME"),
        ("Yn gywir,\n\nSiân Morgan\nSpecialty Doctor", "Siân Morgan", "NAME"),
        ("Patient: WILL, Jonathan     MRN: RR80123456", "WILL, Jonathan", "NAME"),
        ("Rose is a 92-year-old lady", "92-year-old", "AGE"),
        ("Mrs Robson (aged 96) was seen", "aged 96", "AGE"),
        ("Subject: A&G - Mark Lowe, 94 yrs", "94 yrs", "AGE"),
        ("Tel: 0113 496 0123 ext 4521   Fax", "ext 4521", "PHONE"),
        ("on 0161 496 0999 x 23.", "x 23", "PHONE"),
        ("TB screen Mar-23 negative", "Mar-23", "DATE"),
        ("Next injection due Fri 15/3.", "Fri 15/3", "DATE"),
        ("Dyddiad / Date: 15 Mawrth 2024", "15 Mawrth 2024", "DATE"),
        ("Chapeltown Road, Leeds LS7 4SA", "Chapeltown Road", "ADDRESS"),
        ("Flat 2F1, 9 Spottiswoode Street, Edinburgh EH9 1DQ", "Flat 2F1", "ADDRESS"),
        ("of Flat 12, Barnfield House, Manchester M20 2ZZ, in", "Flat 12", "ADDRESS"),
        ("resident at Rosewood Care Home, 3 Elm Rise", "Rosewood Care Home", "ADDRESS"),
        ("Referral ID: 2024-0098-TD     Received", "2024-0098-TD", "MRN"),
    ],
)
def test_shapes_a_second_review_found(text, identifier, kind):
    start = text.index(identifier)
    spans = find_phi(text)
    assert any(s.kind == kind and s.start <= start < s.end for s in spans), spans
    assert identifier.split()[0] not in deidentify(text)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Re: Oliver Will-Brown\nrisk. Will need bloods before the next visit.", "Will need"),
        ("Re: Joseph Okonkwo, carer Will Okonkwo\nWill you please continue.", "Will you"),
        ("Re: Mr Jonathan Will\nMark improvement by day 5.", "Mark improvement"),
        ("Re: Mrs Rose Green\nRose coloured plaques. Rose by 2 points.", "Rose coloured"),
        ("Re: Mrs May Robson\nIn May 2024 we will repeat the LFTs.", "we will"),
        ("a 45-year-old nurse, 90% BSA, over 95 years of records", "45-year-old"),
        ("a 45-year-old nurse, 90% BSA, over 95 years of records", "95 years"),
        ("ninety-three patients were audited", "ninety-three"),
        ("Baby aged 91 days, reviewed with mum", "aged 91 days"),
        ("Salford Royal (formerly Hope Hospital), Hope Street clinic", "Hope Hospital"),
        ("Jo Bloggs\nTissue Viability Nurse Specialist\nDirect line", "Tissue Viability"),
        ("Lauriston Building, Lauriston Place, Edinburgh EH3 9HA", "Lauriston Building"),
        ("Oakwood Lane Medical Practice and Barlow Moor Road Surgery", "Medical Practice"),
    ],
)
def test_words_a_second_review_kept(text, kept):
    assert kept in deidentify(text)


def test_precision_and_recall_on_the_third_held_out_letters():
    """Written after the second set's fixes and scored once with the rules unchanged:
    precision 1.000, recall 0.873 (7 misses); the rules then took "Dear Siobhan,", a name
    after "Witnessed by:", "RBH 7788123" after "Hospital number:", "turns 100" and
    "Christmas 2023". Left: a house name ("The Old Vicarage") and a first name as a
    vocative ("Joy, please do get in touch")."""
    figures = score(uk_letters("uk_letters_heldout3.txt"))
    assert figures["ALL"]["labelled"] >= 50
    assert figures["ALL"]["precision"] >= 0.99, figures["ALL"]
    assert figures["ALL"]["recall"] >= 0.96, figures["ALL"]


@pytest.mark.parametrize(
    ("text", "identifier", "kind"),
    [
        ("Dear Siobhan,\n\nThanks for your e-mail.", "Siobhan", "NAME"),
        ("Witnessed by: Will Hargreaves, Medical Photographer", "Will Hargreaves", "NAME"),
        ("Hospital number: RBH 7788123", "RBH 7788123", "MRN"),
        ("who turns\n100 next month", "100", "AGE"),
        ("a lesion on the nose since Christmas 2023.", "Christmas 2023", "DATE"),
    ],
)
def test_shapes_the_third_letters_found(text, identifier, kind):
    start = text.index(identifier)
    spans = find_phi(text)
    assert any(s.kind == kind and s.start <= start < s.end for s in spans), spans


@pytest.mark.parametrize(
    "text", ["Dear Colleague,\nThank you.", "Dear Parent,\nYour child", "Hi All,\nReminder"]
)
def test_a_greeting_to_no_one_in_particular_stays(text):
    assert deidentify(text) == text
