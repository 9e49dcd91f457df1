"""Development tools: the `make run` launcher, the Procfile entries, the embedded Redis."""
