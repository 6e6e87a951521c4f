"""`python -m services.stack run|chat`: the local stack launcher and the terminal chat."""

from __future__ import annotations

import typer

from shared.logging_setup import configure_logging
from shared.settings import GatewaySettings, get_settings

cli = typer.Typer(add_completion=False, help=__doc__)


@cli.command()
def run() -> None:
    """Start Redis and Postgres (embedded unless configured), a worker, the gateway and the bot."""
    from services.stack.launcher import Stack, run_stack

    stack = Stack.from_environment()
    configure_logging(stack.settings.log_level, "console")
    run_stack(stack)


@cli.command()
def chat(url: str = typer.Option(None, help="Gateway URL (default http://GATEWAY_HOST:GATEWAY_PORT)")) -> None:
    """Talk to the model in the terminal through a running gateway."""
    from services.stack.chat import run_chat

    run_chat(get_settings(GatewaySettings), url)


if __name__ == "__main__":
    cli()
