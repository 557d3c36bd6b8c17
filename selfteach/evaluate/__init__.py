"""Evaluation: accuracy with pass@k/maj@k, anytime curves and the Anytime Index, PDP."""

from selfteach.evaluate.accuracy import AccuracyConfig, accuracy, run_accuracy

__all__ = ["AccuracyConfig", "accuracy", "run_accuracy"]
