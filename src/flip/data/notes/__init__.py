"""Free-text notes at the site: de-identification and clinical NLP (into note, note_nlp)."""
