FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY domain domain
COPY contracts contracts
COPY projections projections
COPY services services
# An auditor checks an export with it, without the service (docs/AUDIT.md).
COPY tools tools
RUN uv sync --locked --no-dev
ENV PATH="/app/.venv/bin:$PATH" CRM_DATA_DIR=/data
# The service runs as a user of its own; a volume mounted at either data directory starts out
# owned by it (Docker copies the image's directory into a new named volume).
RUN useradd --system --no-create-home --uid 10001 crm \
    && mkdir -p /data /var/lib/crm && chown crm:crm /data /var/lib/crm
USER crm
EXPOSE 8000
CMD ["crm", "serve", "--host", "0.0.0.0", "--port", "8000"]
