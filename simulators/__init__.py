"""Simulators that stand in for robots and carriers in tests and the demo."""
