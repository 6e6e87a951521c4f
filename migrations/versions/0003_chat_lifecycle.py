"""chat lifecycle: a chat's state (active, inactive, migrated) and its migration ids (issue 21)

Revision ID: 0003_chat_lifecycle
Revises: 0002_post_answers
Create Date: 2026-12-03 09:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_chat_lifecycle"
down_revision = "0002_post_answers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chat_settings", sa.Column("state", sa.String(length=16), server_default="active", nullable=False))
    op.add_column("chat_settings", sa.Column("state_reason", sa.String(length=32), nullable=True))
    op.add_column("chat_settings", sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("chat_settings", sa.Column("migrated_to", sa.BigInteger(), nullable=True))
    op.add_column("chat_settings", sa.Column("migrated_from", sa.BigInteger(), nullable=True))
    op.create_index(op.f("ix_chat_settings_state"), "chat_settings", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_settings_state"), table_name="chat_settings")
    op.drop_column("chat_settings", "migrated_from")
    op.drop_column("chat_settings", "migrated_to")
    op.drop_column("chat_settings", "state_changed_at")
    op.drop_column("chat_settings", "state_reason")
    op.drop_column("chat_settings", "state")
