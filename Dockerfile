# The service image that docker-compose.yml builds for its `migrate` and `service` containers.
FROM python:3.11-slim
WORKDIR /srv/publishers
# The framework, installed from its wheel as a service of your own installs it.
COPY pyproject.toml README.md ./
COPY dbos_publishers ./dbos_publishers
RUN pip install --no-cache-dir . && rm -rf dbos_publishers build
# The reference service: its publishers, its publishers file and its migrations environment, in
# the working directory the service reads them from.
COPY alembic.ini dbos-config.yaml publishers.toml ./
COPY app ./app
COPY migrations ./migrations
ENV APP_HTTP_HOST=0.0.0.0 APP_LOG_FORMAT=json
EXPOSE 8000
# The service itself, not `dbos start` (which runs it): a SIGTERM must reach the process that
# stops cleanly, and `dbos start` exits at once on it.
CMD ["python", "-m", "app", "serve"]
