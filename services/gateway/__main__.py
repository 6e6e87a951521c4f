"""`python -m services.gateway`: the gateway under uvicorn on GATEWAY_HOST:GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from shared.logging_setup import configure_from_settings
from shared.settings import GatewaySettings, get_settings


def main() -> None:
    settings = get_settings(GatewaySettings)
    configure_from_settings(settings)
    uvicorn.run(
        "services.gateway.app:create_app",
        factory=True,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,  # keep our JSON logging
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
