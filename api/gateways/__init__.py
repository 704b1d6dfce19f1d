"""HTTP concerns on top of the one path per operation: Idempotency-Key, 202/200/504."""
