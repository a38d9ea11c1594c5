"""The native flow SDK: flows and tasks in plain Python, reported to coplane as runs."""
