"""Validation rules and data-quality checks applied before a record enters the store."""
