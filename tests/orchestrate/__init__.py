"""Tests for the flow SDK and the server side of acting on runs."""
