"""site indexes: a site's polls find its own answers, decisions and runs without a scan

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 03:10:00
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: (index, table, columns): each table that pairs a site with something is searched by site.
INDEXES = [
    ("ix_project_sites_site", "project_sites", ["site_id", "project_id"]),
    ("ix_task_decisions_site", "task_decisions", ["site_id", "task_id"]),
    ("ix_query_results_site", "query_results", ["site_id", "query_id"]),
    ("ix_run_sites_site", "run_sites", ["site_id", "run_id"]),
    ("ix_queries_project", "queries", ["project_id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
