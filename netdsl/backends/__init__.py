"""Backends read the IR (and the analyses' node attributes) and never change it."""
