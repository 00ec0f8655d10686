# syntax=docker/dockerfile:1
# One image for every orderbridge service: `docker run orderbridge <subcommand>`.
# Dependencies are pinned by constraints.txt (two builds install the same versions).

FROM python:3.11-slim AS build
WORKDIR /src
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin orderbridge
# The ERP inbox: a named volume mounted here starts as a copy of this directory,
# so it belongs to the user the services run as (a volume created by Docker
# would otherwise be root's, and the file adapter could not write).
RUN mkdir -p /data/erp-inbox && chown orderbridge:orderbridge /data/erp-inbox
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
USER orderbridge
WORKDIR /home/orderbridge
ENTRYPOINT ["orderbridge"]
CMD ["--help"]
