"""The native flow SDK and its server side: logs, concurrency limits, pauses, connections."""
