"""privacy and feedback: the allow-list of groups, the groups told they are not allowed, a chat's
learning switch, the replies the bot sent and the reactions on them (issue 20)

Revision ID: 0004_privacy_feedback
Revises: 0003_chat_lifecycle
Create Date: 2026-12-03 12:50:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

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
    op.create_table(
        "bot_replies",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("tone", sa.Text(), nullable=True),
        sa.Column("scores", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("dialog", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("reactions", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False),
        sa.Column("likes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("dislikes", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "message_id"),
    )
    op.create_index(op.f("ix_bot_replies_created_at"), "bot_replies", ["created_at"], unique=False)
    op.create_index(op.f("ix_bot_replies_model_version"), "bot_replies", ["model_version"], unique=False)
    op.create_table(
        "reply_reactions",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("kinds", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id", "message_id"], ["bot_replies.chat_id", "bot_replies.message_id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("chat_id", "message_id", "actor"),
    )


def downgrade() -> None:
    op.drop_table("reply_reactions")
    op.drop_index(op.f("ix_bot_replies_model_version"), table_name="bot_replies")
    op.drop_index(op.f("ix_bot_replies_created_at"), table_name="bot_replies")
    op.drop_table("bot_replies")
    op.drop_index(op.f("ix_chat_refusals_refused_at"), table_name="chat_refusals")
    op.drop_table("chat_refusals")
    op.drop_table("chat_allowlist")
    op.drop_column("chat_settings", "learn")
