"""alembic's environment as the framework packages it: used where the working directory holds
no alembic.ini of a service's own."""

from dbos_publishers.alembic_env import run

run()
