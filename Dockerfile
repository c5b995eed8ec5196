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
CMD ["dbos", "start"]
