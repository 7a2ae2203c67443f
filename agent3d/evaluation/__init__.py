"""Batch evaluation against ground-truth masks: datasets, metrics, runner, report."""
