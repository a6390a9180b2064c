"""Tables and figures built from per-update scores."""
