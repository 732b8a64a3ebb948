# One image for every platform service (ingest, stream worker, cockpit API).
FROM node:20-slim AS web
WORKDIR /web
COPY cockpit_api/web/package.json cockpit_api/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cityops ./cityops
COPY lifeline ./lifeline
COPY geo ./geo
COPY ingest ./ingest
COPY streams ./streams
COPY store ./store
COPY cockpit_api ./cockpit_api
COPY --from=web /web/node_modules/echarts/dist/echarts.min.js ./cockpit_api/web/node_modules/echarts/dist/
COPY simulators ./simulators
COPY bench ./bench
COPY drills ./drills
RUN pip install . && useradd --system --uid 10001 cityops
USER cityops
ENTRYPOINT ["cityops"]
CMD ["--help"]
