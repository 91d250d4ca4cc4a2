"""ops domain of the API."""
