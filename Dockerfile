# The service image that docker-compose.yml builds for its `migrate` and `service` containers.
FROM python:3.11-slim
WORKDIR /srv/publishers
COPY pyproject.toml README.md alembic.ini dbos-config.yaml publishers.toml ./
COPY app ./app
COPY migrations ./migrations
# Editable, so publishers.toml, alembic.ini and migrations/ stay beside the package.
RUN pip install --no-cache-dir -e .
ENV APP_HTTP_HOST=0.0.0.0 APP_LOG_FORMAT=json
EXPOSE 8000
# The service itself, not `dbos start` (which runs it): a SIGTERM must reach the process that
# stops cleanly, and `dbos start` exits at once on it.
CMD ["python", "-m", "app", "serve"]
