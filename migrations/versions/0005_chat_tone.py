"""per-chat tone: where in the toxicity range the reranker's chosen reply sits

Revision ID: 0005_chat_tone
Revises: 0004_privacy_feedback
Create Date: 2026-12-03 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_chat_tone"
down_revision = "0004_privacy_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chat_settings", sa.Column("tone", sa.String(length=8), server_default="normal", nullable=False))


def downgrade() -> None:
    op.drop_column("chat_settings", "tone")
