"""Zeitflow."""
