"""Audit: an event journal referring to products and customers."""
