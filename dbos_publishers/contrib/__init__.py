"""Publishers built on the public API: generated events, a JSON-lines file, a webhook."""
