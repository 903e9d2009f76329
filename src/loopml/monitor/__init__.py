"""Monitoring: prediction log, feedback, drift, decay, alerts and the retrain policy."""
