"""Zeitflow: raw measurement CSVs to clean regular series, trained forecasters and honest evaluation."""

__version__ = "0.1.0"
