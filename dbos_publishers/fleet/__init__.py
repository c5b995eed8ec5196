"""The fleet: a worker's lease, heartbeat, clean stop and the takeover of workers that are
gone; the running process's health."""
