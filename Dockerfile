# syntax=docker/dockerfile:1
# One image recipe for every service of the workspace; the service is a build argument.
# Build from the repository root (the uv workspace), for example:
#   docker build --build-arg SERVICE=inventory --target service -t stockzen-inventory .
#   docker build --build-arg SERVICE=gateway --target gateway -t stockzen-gateway .
# SERVICE names the workspace package stockzen-<SERVICE> and its console script of the same name.
ARG SERVICE

# The browser app, built with the locked npm dependencies; only its static files reach the gateway's
# image (BuildKit builds this stage only for the `gateway` target).
FROM node:20-slim AS web
WORKDIR /web
COPY clients/web/package.json clients/web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY clients/web ./
RUN npm run build

FROM python:3.11-slim AS build
ARG SERVICE
RUN test -n "$SERVICE" || (echo "build with --build-arg SERVICE=<gateway|inventory|sync-worker>" >&2; exit 1)

# uv from PyPI, pinned like the Makefile's; it must use this image's interpreter, never download one.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /src
# Every workspace member's pyproject.toml is needed to resolve the locked workspace.
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
# Exactly the locked versions of this service's dependencies; members installed as wheels
# (--no-editable), so that the runtime stage needs only /app/.venv, not the sources.
RUN uv sync --frozen --no-dev --no-editable --package stockzen-${SERVICE}

FROM python:3.11-slim AS service
ARG SERVICE
RUN useradd --system --uid 10001 --user-group --no-create-home stockzen
COPY --from=build /app/.venv /app/.venv
# The entrypoint must be the exec form (signals reach the service itself), which cannot expand a
# build argument: a fixed name links to this service's console script instead.
RUN ln -s /app/.venv/bin/stockzen-${SERVICE} /usr/local/bin/stockzen-service
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER stockzen
# Outside production a service listens on 127.0.0.1, unreachable from outside its container: give it
# a host such as 0.0.0.0 with STOCKZEN_PUBLISH_ADDRESS=127.0.0.1 (what docker-compose.yml does, and
# then publishes the port on the host's loopback only), or run it with STOCKZEN_ENV=production.
ENTRYPOINT ["stockzen-service"]

# The gateway also serves the browser app at /app/.
FROM service AS gateway
COPY --from=web /web/dist /app/web
ENV WEB_APP_DIR=/app/web
