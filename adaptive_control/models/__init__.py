"""Dynamics networks and the data normaliser they carry."""
