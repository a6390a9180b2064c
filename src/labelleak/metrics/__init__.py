"""Scores of predictions against ground truth (used by the analysis only, never by attacks)."""
