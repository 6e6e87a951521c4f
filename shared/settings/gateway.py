"""The gateway's settings (`python -m services.gateway`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from shared.settings.base import QueueSettings


class GatewaySettings(QueueSettings):
    """The HTTP API: where it listens, what a request may carry, when it sheds load, the admin token."""

    gateway_host: str = Field(
        default="127.0.0.1", description="Address the gateway listens on (0.0.0.0 in containers)."
    )
    gateway_port: int = Field(default=8000, description="Port of the gateway.")
    max_dialog_turns: int = Field(default=8, ge=1, description="Most turns a reply request may carry.")
    max_turn_chars: int = Field(default=4096, ge=1, description="Longest turn a request may carry (characters).")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Bigger request bodies get 413.")
    max_queue_depth: int = Field(
        default=200, ge=1, description="Backpressure: with this many jobs waiting, new requests get 503 at once."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of /admin (secret); unset: admin off."
    )
