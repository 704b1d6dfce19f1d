"""Example domains built on entityflow."""
