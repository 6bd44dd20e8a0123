"""Engines move messages between vertex rules: in one process, or between Ray actors."""
