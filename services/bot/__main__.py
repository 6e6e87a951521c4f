"""`python -m services.bot`: the Telegram bot (long polling, or a webhook server with BOT_MODE=webhook)."""

from services.bot.main import main

if __name__ == "__main__":
    main()
