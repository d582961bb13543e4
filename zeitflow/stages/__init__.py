"""Pipeline stages: pure functions over canonical frames (stages.md §0.1)."""
