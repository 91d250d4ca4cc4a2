"""models domain of the API."""
