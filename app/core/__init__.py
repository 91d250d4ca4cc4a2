"""core domain of the API."""
