"""Evaluation of adapters against the base model: paired statistics (:mod:`evaluation.stats`)."""
