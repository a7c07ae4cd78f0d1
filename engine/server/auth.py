"""API authentication: a static token (``TAIWA_API_TOKEN``) or JWTs with roles
(``TAIWA_JWT_SECRET``, HS256, claim ``role`` or ``roles``).

Roles are ordered ``reader < operator < admin``; the static token is ``admin``. The token is
taken from ``Authorization: Bearer ...`` or, as in Rasa, the ``token`` query parameter.
Without any credentials configured the API endpoints refuse every request (401 with the
fix): an assistant is never exposed by accident. Tokens are compared in constant time and
never echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import jwt
from sanic import Request

from engine.server.errors import ApiError

Role = Literal["reader", "operator", "admin"]
ROLES: tuple[Role, ...] = ("reader", "operator", "admin")

TOKEN_ENV = "TAIWA_API_TOKEN"
JWT_ENV = "TAIWA_JWT_SECRET"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role


@dataclass(frozen=True)
class Auth:
    token: str | None = None
    jwt_secret: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Auth:
        return cls(env.get(TOKEN_ENV) or None, env.get(JWT_ENV) or None)

    @property
    def configured(self) -> bool:
        return bool(self.token or self.jwt_secret)

    def require(self, request: Request, role: Role) -> Principal:
        """The caller, if it holds ``role`` or higher; else ApiError 401/403."""
        if not self.configured:
            raise ApiError(
                401,
                "unauthorized",
                f"The API is locked: no credentials are configured. Fix: set {TOKEN_ENV} "
                f"(or {JWT_ENV} for JWTs with roles) and send `Authorization: Bearer <token>`.",
            )
        presented = _presented(request)
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "Missing credentials: send `Authorization: Bearer <token>` (or ?token=).",
                {"WWW-Authenticate": 'Bearer realm="taiwa"'},
            )
        principal = self._identify(presented)
        if ROLES.index(principal.role) < ROLES.index(role):
            raise ApiError(403, "forbidden", f"This endpoint needs the role {role}; the token has {principal.role}.")
        return principal

    def _identify(self, presented: str) -> Principal:
        if self.token and hmac.compare_digest(presented.encode(), self.token.encode()):
            return Principal("api-token", "admin")
        if self.jwt_secret:
            try:
                claims = jwt.decode(presented, self.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]})
            except jwt.ExpiredSignatureError:
                raise ApiError(401, "unauthorized", "The token has expired.") from None
            except jwt.InvalidTokenError:
                raise ApiError(401, "unauthorized", "The token is not valid.") from None
            role = _role_of(claims)
            if role is None:
                raise ApiError(403, "forbidden", f"The token carries no known role (one of {', '.join(ROLES)}).")
            return Principal(str(claims.get("sub", "jwt")), role)
        raise ApiError(401, "unauthorized", "The token is not valid.")


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    token = request.args.get("token")
    return token or None


def _role_of(claims: Mapping[str, object]) -> Role | None:
    raw = claims.get("role", claims.get("roles"))
    names = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list | tuple) else []
    held = [r for r in ROLES if r in names]
    return held[-1] if held else None
