"""Simulators: the demo pilot city, labelled scenarios, signal families, the carrier
platform, recording and replay, and the device publisher they all speak MQTT through."""
