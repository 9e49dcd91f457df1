"""Code shared by the Jobcast web site and worker: config, protocol, storage."""
