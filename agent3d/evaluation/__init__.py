"""Batch evaluation against ground-truth masks: metrics, statistics, the runner and its run store, summary, report."""
