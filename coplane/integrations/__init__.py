"""One folder per outside system coplane talks to."""
