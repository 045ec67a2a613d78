"""CRM: customers (12,000) and their interactions; foreign keys to and from the shop."""
