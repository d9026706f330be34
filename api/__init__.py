"""HTTP and WebSocket adapter: the only layer that knows about HTTP."""

from callvet.api.app import create_app

__all__ = ["create_app"]
