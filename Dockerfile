# syntax=docker/dockerfile:1
# kmskey-operator: the operator (and the KMS emulator, for kind e2e) as one small non-root image.
#
#   docker build -t kmskey-operator:0.1.0 .
#   docker run --rm kmskey-operator:0.1.0 --help
#   make image     # the same build without Docker: buildah on a Debian base built here (hack/build-image.sh)
#
# Stage 1 installs the project and its pinned dependencies (constraints.txt, the project's lock) into a
# virtualenv that has no pip or setuptools of its own: the base's pip installs into it from outside. Most
# dependencies are manylinux wheels; seven alibabacloud-* packages are pure-Python source distributions,
# which pip builds into wheels with setuptools (no compiler: none of them has C code). PIP_INSTALL_ARGS lets an
# offline build install from a mounted wheelhouse instead of the index (hack/build-image.sh does that).
# Stage 2 copies only that virtualenv onto the runtime base: no pip cache, no build tools, no sources.
#
# Both bases are build arguments; the default pins the official image by digest (re-pin with
# `docker buildx imagetools inspect python:3.11-slim-bookworm`). BUILD_IMAGE must have python3 and pip 22.3+
# at the same path as PYTHON_IMAGE's python3, since the venv links to it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
ARG BUILD_IMAGE=${PYTHON_IMAGE}

FROM ${BUILD_IMAGE} AS build
ARG PIP_INSTALL_ARGS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY operator ./operator
# Runtime dependencies only (no dev extra), each at the version constraints.txt pins, installed by the base's
# pip; then prove the entry points import and that no installed package has a broken requirement.
# kubernetes/aio is the client's asyncio twin (68 MB): neither the operator nor kopf imports it. Bytecode is
# compiled here, because the root filesystem is read-only at run time.
# hadolint ignore=SC2086
RUN python3 -m venv --without-pip /opt/kmskey-operator \
 && python3 -m pip --python /opt/kmskey-operator/bin/python install --quiet --no-cache-dir $PIP_INSTALL_ARGS \
      --constraint constraints.txt . \
 && python3 -m pip --python /opt/kmskey-operator/bin/python check \
 && rm -rf /opt/kmskey-operator/lib/python3.11/site-packages/kubernetes/aio \
 && find /opt/kmskey-operator -name __pycache__ -type d -prune -exec rm -rf {} + \
 && /opt/kmskey-operator/bin/python -m compileall -q -j 0 /opt/kmskey-operator/lib \
 && /opt/kmskey-operator/bin/kmskey-operator --help >/dev/null \
 && /opt/kmskey-operator/bin/kms-emulator --help >/dev/null \
 && test ! -e /opt/kmskey-operator/bin/pip

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
# Where the source lives, e.g. --build-arg SOURCE="$GITHUB_SERVER_URL/$GITHUB_REPOSITORY" in CI.
ARG SOURCE=unknown
ARG PYTHON_IMAGE
LABEL org.opencontainers.image.title="kmskey-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages Alibaba Cloud KMS keys as KmsKey resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="kmskey-operator maintainers" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=build /opt/kmskey-operator /opt/kmskey-operator
ENV PATH=/opt/kmskey-operator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user (the chart's runAsUser): Kubernetes can check runAsNonRoot without /etc/passwd.
# It has no passwd entry, and the operator needs none.
USER 65532:65532
WORKDIR /tmp
# 8080 /metrics, 8081 /healthz, 8082 /readyz, 9443 the admission webhook (HTTPS).
EXPOSE 8080 8081 8082 9443
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz (see the Helm chart).
ENTRYPOINT ["kmskey-operator"]
CMD ["run"]
