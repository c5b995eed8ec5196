"""The reference service: publishers built on the framework (app.publishers), declared in
publishers.toml, run by `dbos start` as `python -m app serve`. A service of your own has this
shape: a module of publishers, a publishers file, dbos-config.yaml and migrations/."""
