"""Simulators: the demo pilot city, labelled scenarios and replay."""
