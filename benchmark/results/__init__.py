"""The tidy tables of a results folder, the one place their schema lives: `tables` writes them as
they come (runs.csv, metrics.csv, trials/<id>.json; atomic writes, whole rows), `read` reads and
validates them for analysis and reports, `provenance` records where every number came from
(code version, software, hardware) and reads it back, and `weights` writes a trained net's weights
with its model card (a completed trial's `weights/<trial_id>.safetensors`, `export`'s files).
"""
