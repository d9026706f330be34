"""One router per part; each route reads its services from the composition root's container."""

__all__: list[str] = []
