"""The documents the API publishes: OpenAPI response models and the AsyncAPI document."""
