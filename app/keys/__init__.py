"""keys domain of the API."""
