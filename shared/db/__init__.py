"""Database access shared by every service: engines, sessions and the tables (models.py)."""

from shared.db.engine import make_async_engine, make_engine, migrate, to_sqlalchemy_url
from shared.db.models import Base

__all__ = ["Base", "make_async_engine", "make_engine", "migrate", "to_sqlalchemy_url"]
