"""vigil evidence service."""
