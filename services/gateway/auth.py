"""Bearer-token guard of the admin API (`ADMIN_TOKEN`).

No token configured: the admin API is off and says so (403). A missing or wrong token: 401.
Tokens are compared as SHA-256 digests with `hmac.compare_digest`, so neither the content nor the
length of the configured token leaks through response timing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.deps import SettingsDep

_bearer = HTTPBearer(auto_error=False, description="The ADMIN_TOKEN configured on the gateway")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the admin API is off: set ADMIN_TOKEN to enable it")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(_digest(given), _digest(settings.admin_token.get_secret_value())):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail="missing or wrong admin token", headers={"WWW-Authenticate": "Bearer"}
        )


AdminDep = Depends(require_admin)


# Documented on every admin operation (OpenAPI), with the shared error body.
# OpenAPI's extra responses, in the shape FastAPI's `responses=` takes
Responses = dict[int | str, dict[str, Any]]

ADMIN_RESPONSES: Responses = {
    400: {"description": "The body is not parseable (not JSON, broken encoding)"},
    401: {
        "description": "Missing or wrong admin token",
        "content": {"application/json": {"example": {"detail": "missing or wrong admin token"}}},
    },
    403: {"description": "The admin API is off (no ADMIN_TOKEN configured)"},
    503: {"description": "Redis or the database is unavailable (see Retry-After)"},
}
