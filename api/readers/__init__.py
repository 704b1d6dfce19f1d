"""The API's caches over the store's readers: entity state and workflow status."""
