"""Periodic work (event maintenance now; SLA deadlines and polling later) behind one scheduler."""
