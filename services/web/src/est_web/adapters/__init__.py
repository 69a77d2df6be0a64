"""What speaks to another program directly: the HTTP client forwarding to the services."""
