"""The protocol layer: ASGI app (the request pipeline), wire formats. The only code that knows api-versions and JSON."""
