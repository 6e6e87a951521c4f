"""The Telegram bot: answers group and private messages like a 2ch /b/ poster (docs/bot.md)."""
