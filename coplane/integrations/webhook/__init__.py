"""Generic webhook: a signed JSON POST of every alert to a URL of the user's choosing."""
