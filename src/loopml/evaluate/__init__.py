"""Evaluation: metrics, calibration, slices, fairness and robustness of a model's predictions.

These are the building blocks issue #5's evaluation, reports and gates stand on: pure
functions over labels, scores and the rows they came from, with no storage of their own.
"""
