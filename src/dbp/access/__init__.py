"""Identities, authentication, Art. 77 field-level read rights, write rights and grants."""
