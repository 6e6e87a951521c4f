"""privacy and feedback: the allow-list of groups, the groups told they are not allowed, a chat's
learning switch (issue 20)

Revision ID: 0004_privacy_feedback
Revises: 0003_chat_lifecycle
Create Date: 2026-12-03 12:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_privacy_feedback"
down_revision = "0003_chat_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("chat_settings", sa.Column("learn", sa.Boolean(), server_default="false", nullable=False))
    op.create_table(
        "chat_allowlist",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_table(
        "chat_refusals",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("chat_id"),
    )
    op.create_index(op.f("ix_chat_refusals_refused_at"), "chat_refusals", ["refused_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_chat_refusals_refused_at"), table_name="chat_refusals")
    op.drop_table("chat_refusals")
    op.drop_table("chat_allowlist")
    op.drop_column("chat_settings", "learn")
