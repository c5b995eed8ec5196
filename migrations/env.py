"""alembic's environment: the framework's packaged revisions first, then this service's own."""

from dbos_publishers.alembic_env import run

run()
