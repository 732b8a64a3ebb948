"""Detectors: causal folds ``(state, batch of one series) -> (state, per-row output)``.

Every detector works on plain arrays of event times (epoch seconds) and values, keeps
what it needs of the past in an explicit state, and gives the same rows whether a
series arrives in one batch or in many.
"""
