# claude-orchestrator-cli:<CLAUDE_CODE_VERSION>: the pinned Claude Code CLI, and nothing else.
#
# The `claude` binary ships inside the PyPI wheel of claude-agent-sdk (no npm needed). This image
# downloads that wheel once per machine, keeps only the binary, and the worker and manager
# Dockerfiles take it with `COPY --from`. scripts/build-images.sh builds it only when the tag is
# missing, and reads the pin below (the one place it is written) to name the tag.
#
# It needs no build context: docker build -t claude-orchestrator-cli:2.1.330 - < scripts/claude-cli.Dockerfile
# Works with the legacy builder and with BuildKit.
#
# To move to another Claude Code version: set the three pins below together (the version the
# binary reports, the wheel version, and the wheel hashes from https://pypi.org/simple/claude-agent-sdk/),
# and the default CLAUDE_CLI_IMAGE in worker/Dockerfile and manager/Dockerfile.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS fetch
ARG CLAUDE_CODE_VERSION=2.1.330
ARG CLAUDE_AGENT_SDK_VERSION=0.2.187
ARG CLAUDE_AGENT_SDK_SHA256_X86_64=693132296d1ffca857b5d393e449fd138a89bd08024d9a3e519615ba4040d9c3
ARG CLAUDE_AGENT_SDK_SHA256_AARCH64=3f9f9de8676779af46a0ae49a9dafb9934ea8bd9526a0cd60cc86cde787eee41
# PEM certificates to trust while downloading (a TLS-inspecting proxy's); not kept in any layer.
ARG EXTRA_CA_CERTS=
# One step, so the 167 MB wheel is never stored in a layer: only the 381 MB binary is.
RUN set -eu; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
        { cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; printf '%s\n' "$EXTRA_CA_CERTS"; } \
            > /tmp/build-ca.pem; \
        export PIP_CERT=/tmp/build-ca.pem; \
    fi; \
    python3 -m venv /tmp/pip-venv; \
    printf 'claude-agent-sdk==%s --hash=sha256:%s --hash=sha256:%s\n' \
        "$CLAUDE_AGENT_SDK_VERSION" "$CLAUDE_AGENT_SDK_SHA256_X86_64" "$CLAUDE_AGENT_SDK_SHA256_AARCH64" \
        > /tmp/claude-agent-sdk.txt; \
    /tmp/pip-venv/bin/pip download --quiet --no-cache-dir --disable-pip-version-check \
        --no-deps --only-binary=:all: --require-hashes -r /tmp/claude-agent-sdk.txt -d /tmp/wheel; \
    mkdir -p /out; \
    python3 -c 'import glob, shutil, zipfile; \
wheel = zipfile.ZipFile(glob.glob("/tmp/wheel/claude_agent_sdk-*.whl")[0]); \
src = wheel.open("claude_agent_sdk/_bundled/claude"); \
dst = open("/out/claude", "wb"); \
shutil.copyfileobj(src, dst, 1 << 20); dst.close()'; \
    chmod 0755 /out/claude; \
    rm -rf /tmp/pip-venv /tmp/wheel /tmp/claude-agent-sdk.txt /tmp/build-ca.pem /root/.cache; \
    reported=$(HOME=/tmp DISABLE_AUTOUPDATER=1 /out/claude --version); \
    case "$reported" in \
        "$CLAUDE_CODE_VERSION "*) echo "claude --version: $reported" ;; \
        *) echo "error: the wheel's claude reports '$reported', expected $CLAUDE_CODE_VERSION" >&2; exit 1 ;; \
    esac; \
    rm -rf /tmp/.claude* /tmp/claude*
# By this label build-images.sh removes what the legacy builder keeps of this stage (a second
# 381 MB copy of the binary) once the image below is made.
LABEL claude-orchestrator.build-stage=cli-fetch

FROM scratch
ARG CLAUDE_CODE_VERSION=2.1.330
ARG CLAUDE_AGENT_SDK_VERSION=0.2.187
COPY --from=fetch /out/claude /usr/local/bin/claude
LABEL org.opencontainers.image.title="claude-orchestrator-cli" \
      org.opencontainers.image.description="Claude Code CLI ${CLAUDE_CODE_VERSION} from the claude-agent-sdk ${CLAUDE_AGENT_SDK_VERSION} wheel" \
      org.opencontainers.image.version="${CLAUDE_CODE_VERSION}"
