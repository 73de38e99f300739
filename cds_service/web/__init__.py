"""The HTTP edge: Flask blueprints and the one error handler."""
