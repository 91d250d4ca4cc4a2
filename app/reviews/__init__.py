"""reviews domain of the API: a person's decisions on training points, and refits on them."""
