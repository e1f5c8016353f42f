# Postline: one image, the role is the argument (postline api|relay|webhooks|analytics|migrate|all).
# syntax=docker/dockerfile:1

FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
RUN pip install --no-cache-dir "uv==0.13.9"
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY shared ./shared
COPY services ./services
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="postline" \
      org.opencontainers.image.description="Self-hosted transactional email"
RUN groupadd --system --gid 10001 postline \
 && useradd --system --uid 10001 --gid postline --home-dir /var/lib/postline --create-home postline
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    POSTLINE_DATA_DIR=/var/lib/postline \
    POSTLINE_HTTP_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/postline
EXPOSE 8080 2525 1587
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request,os; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('POSTLINE_HTTP_PORT', '8080') + '/healthz', timeout=2)"]
ENTRYPOINT ["postline"]
CMD ["all"]
