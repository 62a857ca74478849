"""The protocol layer: ASGI app, middleware, wire formats. The only code that knows api-versions and JSON."""
