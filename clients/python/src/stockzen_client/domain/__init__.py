"""The client's pure rules: status states, the retry schedule, and the local view of queued changes."""
