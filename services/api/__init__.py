"""`vigil api`: the HTTP API over the alerts, cameras and labels in Redis, and clip scoring."""
