"""The Jobcast worker: RQ job functions and the worker process entry point."""
