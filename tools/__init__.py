"""Development tools: demo, smoke test, benchmarks, the traffic simulator, the local launcher.

Kept apart from the runtime packages; see docs/architecture.md.
"""
