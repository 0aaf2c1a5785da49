# syntax=docker/dockerfile:1
# kmskey-operator: the operator (and the KMS emulator, for kind e2e) as one small non-root image.
#
#   docker build -t kmskey-operator:0.1.0 .
#   docker run --rm kmskey-operator:0.1.0 --help
#
# Stage 1 installs the project and its pinned dependencies (constraints.txt, the project's lock) into a
# virtualenv; every dependency ships a manylinux wheel for CPython 3.11, so no compiler is needed at all.
# Stage 2 copies only that virtualenv onto the same slim base: no pip cache, no build tools, no sources.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kmskey-operator
ENV PATH=/opt/kmskey-operator/bin:$PATH
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY operator ./operator
# Runtime dependencies only (no dev extra), each at the version constraints.txt pins; then prove the
# entry points import and that no installed package has a broken requirement.
RUN pip install --quiet --constraint constraints.txt . \
 && pip check \
 && kmskey-operator --help >/dev/null \
 && kms-emulator --help >/dev/null

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# Where the source lives, e.g. --build-arg SOURCE="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY" in CI.
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="kmskey-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages Alibaba Cloud KMS keys as KmsKey resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="kmskey-operator maintainers" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
COPY --from=build /opt/kmskey-operator /opt/kmskey-operator
ENV PATH=/opt/kmskey-operator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user (the chart's runAsUser): Kubernetes can check runAsNonRoot without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# 8080 /metrics, 8081 /healthz, 9443 the admission webhook (HTTPS).
EXPOSE 8080 8081 9443
# No HEALTHCHECK: Kubernetes probes /healthz (see the Helm chart).
ENTRYPOINT ["kmskey-operator"]
CMD ["run"]
