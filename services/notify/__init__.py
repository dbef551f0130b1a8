"""vigil notify service."""
