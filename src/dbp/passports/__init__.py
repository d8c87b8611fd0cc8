"""Passports: the Annex XIII data model, versions, lifecycle, search and the EN 18222 API."""
