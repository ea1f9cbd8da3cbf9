"""The `controller` command line and the HTTP server of MLQ."""
