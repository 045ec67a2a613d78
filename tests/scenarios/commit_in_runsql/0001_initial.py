from tests.scenarios import InitialMigration as Migration

__all__ = ["Migration"]
