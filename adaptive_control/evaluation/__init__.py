"""Evaluation: one episode loop for every method, model error, reports."""
