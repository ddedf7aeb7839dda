FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY domain domain
COPY contracts contracts
COPY projections projections
COPY services services
RUN uv sync --locked --no-dev
ENV PATH="/app/.venv/bin:$PATH" CRM_DATA_DIR=/data
EXPOSE 8000
CMD ["crm", "serve", "--host", "0.0.0.0", "--port", "8000"]
