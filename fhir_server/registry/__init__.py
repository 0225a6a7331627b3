"""Registry-specific computations (risk scores) over plain values; no storage, no HTTP."""
