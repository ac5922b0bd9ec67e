"""Pricing simulation: re-rate customers' last closed periods under another plan version
(usually a draft) and report what would change. Reads only; nothing is ever written.
See ``docs/simulation.md``."""
