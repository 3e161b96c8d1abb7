"""Data: reading the shipped sets, curation, splits."""
