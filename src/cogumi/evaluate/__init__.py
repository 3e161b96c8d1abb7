"""Evaluation stages: perplexity, fidelity, lm-eval suites, gates, failure mining, calibration."""
