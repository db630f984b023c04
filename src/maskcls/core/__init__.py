"""The torch-free bottom layer: labels, config, io, tables, metrics, artifacts, progress, plots."""
