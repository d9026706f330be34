"""The API's per-process context is the composition root's container (:mod:`callvet.services`).

``AppContext`` names it where routes take it as a dependency (``ctx: AppContext = Depends(get_ctx)``);
routes read services from its typed properties (``ctx.voice``, ``ctx.calls`` ...) and build none.
"""

from __future__ import annotations

from callvet.services import Services

__all__ = ["AppContext"]

AppContext = Services
