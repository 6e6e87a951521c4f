"""aiogram routers, one per feature: a chat's life (lifecycle.py), commands (commands.py),
ordinary messages (messages.py) and reactions on the bot's replies (reactions.py)."""

from services.bot.handlers.commands import commands_router
from services.bot.handlers.lifecycle import lifecycle_router
from services.bot.handlers.messages import messages_router
from services.bot.handlers.reactions import reactions_router

__all__ = ["commands_router", "lifecycle_router", "messages_router", "reactions_router"]
