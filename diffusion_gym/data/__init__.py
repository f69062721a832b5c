"""Data sets and expert occupancy samplers."""
