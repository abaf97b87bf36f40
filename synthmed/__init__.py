"""synthmed."""
