"""posts.answers: whom each post answers, one entry per part of a post answering several people

Revision ID: 0002_post_answers
Revises: 0001
Create Date: 2026-12-03 10:00:00

Posts stored before this revision keep NULL: the dialog builder gives them the old rule (the first
reply link answers, with the whole text). Nothing is rewritten: dialogs are insert-only.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_post_answers"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("posts", sa.Column("answers", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("posts", "answers")
