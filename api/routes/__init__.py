"""The HTTP routes, one module per resource: generated from the registered domain."""
