"""The web console (/console/): sign-in with an access key, pages over the services (see docs/console.md)."""
