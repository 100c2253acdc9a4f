"""Loaders for the real evaluation and calibration data that install offline (see README, "Data")."""
