"""Simulators that play the synthetic shop's hidden shoppers against a live server."""
