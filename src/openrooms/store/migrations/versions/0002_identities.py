"""ACS users, the server's settings (its resource id), and the keys that sign access tokens.

Times are BIGINT ticks of 100 ns since the Unix epoch (UTC). Signing keys are kept here, private keys included,
so that every instance sharing the database issues and verifies the same tokens: guard the database as a secret.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

# Raw ids compare byte-wise everywhere, as in the participants table ("C" collation on PostgreSQL).
RAW_ID = sa.String(256).with_variant(sa.String(256, collation="C"), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("raw_id", RAW_ID, primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        # Tokens issued before this instant no longer verify; NULL: never revoked.
        sa.Column("tokens_revoked_before", sa.BigInteger, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "server_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_key_pem", sa.Text, nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_table("server_settings")
    op.drop_table("identities")
