"""The pages the service serves beside its API: the dashboard (a static page reading the JSON
routes here) and the API docs, every asset served from this machine (no CDN)."""
