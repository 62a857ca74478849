"""The web console's sessions and its failed sign-ins, in the database: every worker and every instance on it shares
them, so that signing out ends a session everywhere and the limit on sign-in attempts counts every worker's.

`console_sessions` keeps a session by the SHA-256 hash of its token (the token itself is only in the browser's
cookie), who signed in (`kind`, `principal`), the fingerprint of the access key it signed in with (`key_id`, NULL
for a session of another kind) and when it began and ends (seconds since the epoch). Signing out deletes the row;
expired rows are deleted by the next sign-in. `console_sign_in_failures` counts a client address's failed sign-ins
in a window that starts at the first of them; a window that has passed is deleted by the next failure.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("console_sessions_expiry", "console_sessions", ["expires_at"])
    op.create_table(
        "console_sign_in_failures",
        sa.Column("client", sa.Text, primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
    )
    op.create_index("console_sign_in_failures_window", "console_sign_in_failures", ["window_start"])


def downgrade() -> None:
    op.drop_index("console_sign_in_failures_window", "console_sign_in_failures")
    op.drop_table("console_sign_in_failures")
    op.drop_index("console_sessions_expiry", "console_sessions")
    op.drop_table("console_sessions")
