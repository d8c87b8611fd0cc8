"""dbp: a Digital Battery Passport system (EU Battery Regulation 2023/1542, Art. 77-78, Annex XIII)."""

__version__ = "0.1.0"
