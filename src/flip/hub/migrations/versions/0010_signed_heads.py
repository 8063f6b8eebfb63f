"""signed heads and run certificates: each site's signing key, the signed heads of its ledger
the hub was shown, and each completed run's certificate with the sites' countersignatures

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("signing_key", sa.Text))
    op.create_table(
        "site_heads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("problem", sa.Text),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_site_heads_site", "site_heads", ["site_id", "id"])
    op.create_table(
        "run_certificates",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("hub_signature", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "certificate_signatures",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("certificate_signatures")
    op.drop_table("run_certificates")
    op.drop_index("ix_site_heads_site", table_name="site_heads")
    op.drop_table("site_heads")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("signing_key")
