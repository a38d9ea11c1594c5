"""GitHub: an issue for each incident."""
