"""Access control: API keys with scopes, checked for every request when COPLANE_AUTH=keys."""
