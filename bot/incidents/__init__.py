"""Incident awareness: noticing a platform-wide payment problem, and saying so first.

`detector` decides from numbers (pure), `store` owns the SQL, `job` runs the detector in the
server. See docs/decisions/0020-incident-awareness.md."""
