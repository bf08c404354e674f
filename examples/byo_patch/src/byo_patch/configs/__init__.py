"""Hydra configs of the example (found with ``hydra.searchpath=[pkg://byo_patch.configs]``)."""
