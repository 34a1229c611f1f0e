"""The gateway to B特派's platform data: one protocol, embedded SQL and HTTP implementations."""
