"""Weight updates: the file contract (observation vs ground truth) and how updates are computed."""
