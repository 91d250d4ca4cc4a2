"""explain domain of the API."""
