"""The access keys that sign API requests (HMAC), kept in the database so that a rotation reaches every
instance and worker without a restart. Values are the base64 keys of the connection string: guard the
database as a secret.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("name", sa.String(16), primary_key=True),  # "primary" or "secondary"
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),  # ticks of 100 ns since the epoch
    )


def downgrade() -> None:
    op.drop_table("access_keys")
