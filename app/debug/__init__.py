"""debug domain of the API."""
