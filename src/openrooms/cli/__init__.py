"""The `openrooms` command line."""
