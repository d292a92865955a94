#!/usr/bin/env bash
# Build the container images of claude-orchestrator, in this order:
#
#   base                     ARG BASE_IMAGE of every Dockerfile: python:3.11-slim-bookworm, or, where
#                            no image registry answers, claude-orchestrator-base:bookworm made here
#                            with mmdebstrap from Debian's packages (--offline)
#   claude-orchestrator-cli  the pinned Claude Code CLI alone (scripts/claude-cli.Dockerfile); the
#                            167 MB wheel is fetched once per machine, worker and manager copy from it
#   claude-worker            worker/Dockerfile
#   claude-orchestrator      manager/Dockerfile (the manager)
#   claude-<profile>         worker/profiles/<profile>/Dockerfile, only with --profile NAME or --all,
#                            FROM claude-worker-debian (the worker on the whole Debian system, apt
#                            included: worker/Dockerfile with WORKER_ROOT=debian)
#
# The base and the CLI image are made only when missing, so a rebuild with nothing changed takes
# seconds. Run with --help for the options.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

PUBLIC_BASE_IMAGE=${PUBLIC_BASE_IMAGE:-python:3.11-slim-bookworm}
OFFLINE_BASE_IMAGE=${OFFLINE_BASE_IMAGE:-claude-orchestrator-base:bookworm}
DEBIAN_SUITE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What the offline base carries; keep python3 (>= 3.11) and python3-venv: the Dockerfiles need them.
# binutils only builds (its strip takes the debug symbols out of the venv's compiled extensions);
# the worker's run-time tree leaves it out like apt, dpkg and perl (scripts/slim-rootfs.sh).
BASE_PACKAGES=python3,python3-venv,git,ca-certificates,openssh-client,binutils
PULL_TIMEOUT_S=${PULL_TIMEOUT_S:-20}

CLI_DOCKERFILE=scripts/claude-cli.Dockerfile
WORKER_IMAGE=${WORKER_IMAGE:-claude-worker}
MANAGER_IMAGE=${MANAGER_IMAGE:-claude-orchestrator}
# The worker on the whole Debian system, apt included (worker/Dockerfile with WORKER_ROOT=debian):
# what profile images build on. Named after WORKER_IMAGE: claude-worker:TAG -> claude-worker-debian:TAG.
debian_variant() {  # IMAGE
    local name=$1 tag=""
    if [[ ${name##*/} == *:* ]]; then tag=:${name##*:}; name=${name%:*}; fi
    printf '%s-debian%s' "$name" "$tag"
}
WORKER_DEBIAN_IMAGE=${WORKER_DEBIAN_IMAGE:-$(debian_variant "$WORKER_IMAGE")}

usage() {
    cat <<'EOF'
Usage: scripts/build-images.sh [OPTIONS]

Build the claude-orchestrator images: the base, claude-orchestrator-cli (the pinned Claude Code
CLI), claude-worker and claude-orchestrator (the manager); profile images on request.

Options:
  --offline          make the base with mmdebstrap from Debian's packages and `docker import` it
                     as claude-orchestrator-base:bookworm (no image registry needed). Without this
                     option the public base (python:3.11-slim-bookworm) is used, and the offline
                     base is made automatically when the public one cannot be pulled.
  --base IMAGE       use IMAGE as the base as it is (no detection, no mmdebstrap).
  --rebuild-base     make the offline base again even if it exists (picks up Debian updates).
  --only NAME        build only NAME: base, cli, worker, manager or a profile name (e.g. flutter);
                     what NAME is built from is made only if it is missing.
  --profile NAME     also build the profile image claude-NAME from worker/profiles/NAME/Dockerfile
                     (repeatable). Profiles may need more of the internet than PyPI and Debian.
  --all              build every image, every profile included.
  --no-cache         build worker, manager and profiles without Docker's layer cache.
  --ca-cert FILE     also trust this PEM certificate while downloading from PyPI inside the builds
                     (repeatable). The certificates a Debian-like host added to
                     /usr/local/share/ca-certificates (e.g. a TLS-inspecting proxy's) are trusted
                     that way too, unless --no-host-ca. They are used by the download steps only
                     and not installed in the images.
  --no-host-ca       do not pass the host's /usr/local/share/ca-certificates to the builds.
  -h, --help         show this help.

Environment: PUBLIC_BASE_IMAGE, OFFLINE_BASE_IMAGE, DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR,
PULL_TIMEOUT_S (default 20), DOCKER_BUILDKIT (default: BuildKit when buildx is installed, else the
legacy builder); the image names CLI_IMAGE (default claude-orchestrator-cli:<Claude Code version>),
WORKER_IMAGE (claude-worker), MANAGER_IMAGE (claude-orchestrator) and WORKER_DEBIAN_IMAGE (the
profiles' base: WORKER_IMAGE with -debian after its name).

Examples:
  scripts/build-images.sh --offline            # what CI runs
  scripts/build-images.sh --only worker        # after changing worker code
  scripts/build-images.sh --profile flutter    # needs the internet (Flutter SDK download)
EOF
}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-images.sh: error: %s\n' "$*" >&2; exit 1; }

offline=0
base_override=""
rebuild_base=0
only=""
all=0
no_cache=()
profiles=()
ca_certs=()
host_ca=1

while [[ $# -gt 0 ]]; do
    case "$1" in
        --offline) offline=1 ;;
        --base) [[ $# -ge 2 ]] || die "--base needs an image name, e.g. --base python:3.11-slim-bookworm."
                base_override=$2; shift ;;
        --base=*) base_override=${1#--base=} ;;
        --rebuild-base) rebuild_base=1 ;;
        --only) [[ $# -ge 2 ]] || die "--only needs a name: base, cli, worker, manager or a profile."
                only=$2; shift ;;
        --only=*) only=${1#--only=} ;;
        --profile) [[ $# -ge 2 ]] || die "--profile needs a profile name, e.g. --profile flutter."
                   profiles+=("$2"); shift ;;
        --profile=*) profiles+=("${1#--profile=}") ;;
        --all) all=1 ;;
        --no-cache) no_cache=(--no-cache) ;;
        --ca-cert) [[ $# -ge 2 ]] || die "--ca-cert needs a PEM file."
                   ca_certs+=("$2"); shift ;;
        --ca-cert=*) ca_certs+=("${1#--ca-cert=}") ;;
        --no-host-ca) host_ca=0 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see scripts/build-images.sh --help)." ;;
    esac
    shift
done

all_profiles() {
    local d
    for d in "$REPO_ROOT"/worker/profiles/*/; do
        [[ -f "$d/Dockerfile" ]] && basename "$d"
    done
    return 0
}

profile_dockerfile() { printf '%s/worker/profiles/%s/Dockerfile' "$REPO_ROOT" "$1"; }
profile_list() { all_profiles | paste -sd, - | sed 's/,/, /g'; }

case "$only" in
    ""|base|cli|worker|manager) ;;
    claude-worker) only=worker ;;
    claude-orchestrator) only=manager ;;
    claude-orchestrator-cli) only=cli ;;
    *) only=${only#claude-}
       [[ -f "$(profile_dockerfile "$only")" ]] \
           || die "--only '$only' is not an image this script builds (base, cli, worker, manager, or a profile: $(profile_list))." ;;
esac
for p in "${profiles[@]+"${profiles[@]}"}"; do
    [[ -f "$(profile_dockerfile "$p")" ]] \
        || die "no profile '$p': $(profile_dockerfile "$p") does not exist (profiles: $(profile_list))."
done
if [[ $all -eq 1 ]]; then
    mapfile -t profiles < <(all_profiles)
fi
for f in "${ca_certs[@]+"${ca_certs[@]}"}"; do
    grep -q -- '-----BEGIN CERTIFICATE-----' "$f" 2>/dev/null \
        || die "--ca-cert $f is not a readable PEM certificate file."
done
if [[ $host_ca -eq 1 ]]; then
    while IFS= read -r -d '' f; do ca_certs+=("$f"); done \
        < <(find /usr/local/share/ca-certificates -name '*.crt' -type f -print0 2>/dev/null | sort -z)
fi
# The extra certificates travel as a build argument (they are public; no file needs to be in the
# build context). Only the steps that download from PyPI use them.
EXTRA_CA_CERTS=""
if [[ ${#ca_certs[@]} -gt 0 ]]; then
    EXTRA_CA_CERTS=$(cat "${ca_certs[@]}")
fi
if [[ $offline -eq 1 && -n "$base_override" ]]; then
    die "--offline and --base exclude each other: --offline makes the base, --base names one."
fi

# --- Docker ------------------------------------------------------------------------------------

command -v docker >/dev/null 2>&1 \
    || die "the docker command is not installed; install Docker (on Debian: apt-get install docker.io)."
if ! docker_info_err=$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
    case "$docker_info_err" in
        *"permission denied"*)
            die "no permission to use the Docker socket; run as root or add yourself to the 'docker' group (then log in again)." ;;
        *)
            die "the Docker engine is not running or not reachable; start it (systemctl start docker, or dockerd &) or point DOCKER_HOST at it." ;;
    esac
fi

# BuildKit needs the buildx plugin with the Docker CLI 23+; without it fall back to the legacy
# builder explicitly (DOCKER_BUILDKIT=1 without buildx is an error). The Dockerfiles work on both.
if [[ -z "${DOCKER_BUILDKIT:-}" ]]; then
    if docker buildx version >/dev/null 2>&1; then
        export DOCKER_BUILDKIT=1
        builder="BuildKit"
    else
        export DOCKER_BUILDKIT=0
        builder="the legacy builder (buildx is not installed)"
    fi
else
    builder="DOCKER_BUILDKIT=$DOCKER_BUILDKIT"
fi

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# After NAME was rebuilt, remove the image it named before, if nothing else uses it (no other
# tag, no container): every code change would otherwise leave an untagged image behind.
drop_replaced() {  # NAME OLD_ID
    [[ -n "$2" && "$(image_id "$1")" != "$2" ]] || return 0
    # By id, docker rmi would also delete an image that still has one other name: check first.
    [[ "$(docker image inspect --format '{{len .RepoTags}}' "$2" 2>/dev/null)" == 0 ]] || return 0
    docker rmi "$2" >/dev/null 2>&1 || true
}

# Builds with the legacy builder print a deprecation notice on every run; it says nothing new.
# --force-rm: a failed step of the legacy builder leaves no stopped container behind.
docker_build() {
    local status=0 legacy=()
    if [[ "$DOCKER_BUILDKIT" == 0 ]]; then legacy=(--force-rm); fi
    docker build "${legacy[@]+"${legacy[@]}"}" "$@" 2> >(grep -v -e '^DEPRECATED: The legacy builder' \
                                  -e 'BuildKit is currently disabled' \
                                  -e 'Install the buildx component' \
                                  -e 'https://docs.docker.com/go/buildx/' \
                                  -e '^ *environment-variable\.$' \
                                  -e '^ *$' >&2) || status=$?
    return "$status"
}

# --- the base ----------------------------------------------------------------------------------

ensure_mmdebstrap() {
    command -v mmdebstrap >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "mmdebstrap is not installed and there is no apt-get to install it; install mmdebstrap, or build with --base IMAGE."
    [[ $(id -u) -eq 0 ]] \
        || die "mmdebstrap is not installed; install it as root (apt-get install mmdebstrap) and run again."
    say "installing mmdebstrap with apt-get"
    # A failing third-party source must not stop the install of a Debian package.
    apt-get update -qq || say "apt-get update reported errors; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        mmdebstrap debian-archive-keyring >/dev/null \
        || die "could not install mmdebstrap with apt-get; install it by hand (apt-get install mmdebstrap)."
}

make_offline_base() {
    ensure_mmdebstrap
    [[ $(id -u) -eq 0 ]] || command -v unshare >/dev/null 2>&1 \
        || die "mmdebstrap needs root (or user namespaces) to make the base; run as root."
    local partial="$OFFLINE_BASE_IMAGE-partial-$$"
    say "making $OFFLINE_BASE_IMAGE with mmdebstrap ($DEBIAN_SUITE, minbase + $BASE_PACKAGES)"
    # Imported under a temporary name and renamed only when the whole pipeline succeeded, so a
    # failed or cut-off mmdebstrap never leaves a half base under the real name.
    mmdebstrap --quiet --variant=minbase --mode=auto \
        --include="$BASE_PACKAGES" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        "$DEBIAN_SUITE" - \
        "deb $DEBIAN_MIRROR $DEBIAN_SUITE main" \
        "deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main" \
        "deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main" \
    | docker import \
        -c 'ENV LANG=C.UTF-8' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'LABEL org.opencontainers.image.title=claude-orchestrator-base' \
        -c "LABEL org.opencontainers.image.description=\"Debian $DEBIAN_SUITE minbase with $BASE_PACKAGES, made by mmdebstrap\"" \
        -c 'CMD ["bash"]' \
        - "$partial" >/dev/null \
    || { docker rmi "$partial" >/dev/null 2>&1 || true
         die "making the offline base failed (see mmdebstrap's messages above); check that $DEBIAN_MIRROR is reachable, or set DEBIAN_MIRROR."; }
    docker tag "$partial" "$OFFLINE_BASE_IMAGE"
    docker rmi "$partial" >/dev/null 2>&1 || true
}

ensure_offline_base() {
    if image_exists "$OFFLINE_BASE_IMAGE" && [[ $rebuild_base -eq 0 ]]; then
        say "base: $OFFLINE_BASE_IMAGE exists (--rebuild-base to make it again)"
    else
        make_offline_base
    fi
    BASE_IMAGE=$OFFLINE_BASE_IMAGE
}

resolve_base() {
    if [[ -n "$base_override" ]]; then
        BASE_IMAGE=$base_override
        say "base: $BASE_IMAGE (given with --base)"
    elif [[ $offline -eq 1 ]]; then
        ensure_offline_base
    elif image_exists "$PUBLIC_BASE_IMAGE"; then
        BASE_IMAGE=$PUBLIC_BASE_IMAGE
        say "base: $BASE_IMAGE (present)"
    elif timeout "$PULL_TIMEOUT_S" docker pull --quiet "$PUBLIC_BASE_IMAGE" >/dev/null 2>&1; then
        BASE_IMAGE=$PUBLIC_BASE_IMAGE
        say "base: $BASE_IMAGE (pulled)"
    else
        say "cannot pull $PUBLIC_BASE_IMAGE (no registry within ${PULL_TIMEOUT_S}s): using the offline base"
        ensure_offline_base
    fi
}

# --- the images --------------------------------------------------------------------------------

cli_arg() {  # the default of an ARG in the CLI Dockerfile: the one place the pin is written
    sed -n "s/^ARG $1=//p" "$REPO_ROOT/$CLI_DOCKERFILE" | head -n 1
}
CLAUDE_CODE_VERSION=$(cli_arg CLAUDE_CODE_VERSION)
[[ -n "$CLAUDE_CODE_VERSION" ]] || die "no 'ARG CLAUDE_CODE_VERSION=' line in $CLI_DOCKERFILE."
CLI_IMAGE=${CLI_IMAGE:-claude-orchestrator-cli:$CLAUDE_CODE_VERSION}

build_cli() {
    if image_exists "$CLI_IMAGE"; then
        say "cli: $CLI_IMAGE exists (docker rmi it to fetch the CLI again)"
        return 0
    fi
    say "building $CLI_IMAGE (downloads the claude-agent-sdk wheel from PyPI once)"
    # No build context: the Dockerfile comes on standard input and needs no files.
    docker_build --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg EXTRA_CA_CERTS="$EXTRA_CA_CERTS" \
        -t "$CLI_IMAGE" - \
        < "$REPO_ROOT/$CLI_DOCKERFILE" \
        || die "building $CLI_IMAGE failed (see above); it needs PyPI to be reachable from containers."
    # The legacy builder keeps the download stage as an untagged image: a second copy of the
    # binary that nothing uses any more.
    docker image prune --force --filter label=claude-orchestrator.build-stage=cli-fetch >/dev/null
}

build_project_image() {  # NAME DOCKERFILE [DOCKER-BUILD-OPTION...]
    local name=$1 dockerfile=$2 previous; shift 2
    previous=$(image_id "$name")
    say "building $name ($dockerfile${*:+ $*})"
    docker_build "${no_cache[@]+"${no_cache[@]}"}" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg CLAUDE_CLI_IMAGE="$CLI_IMAGE" \
        --build-arg EXTRA_CA_CERTS="$EXTRA_CA_CERTS" \
        "$@" -f "$REPO_ROOT/$dockerfile" -t "$name" "$REPO_ROOT" \
        || die "building $name failed (see the build output above)."
    drop_replaced "$name" "$previous"
}

build_manager() {
    image_exists "$WORKER_IMAGE" || build_project_image "$WORKER_IMAGE" worker/Dockerfile
    local previous; previous=$(image_id "$MANAGER_IMAGE")
    say "building $MANAGER_IMAGE (manager/Dockerfile, FROM $WORKER_IMAGE)"
    docker_build "${no_cache[@]+"${no_cache[@]}"}" --build-arg WORKER_IMAGE="$WORKER_IMAGE" \
        -f "$REPO_ROOT/manager/Dockerfile" -t "$MANAGER_IMAGE" "$REPO_ROOT" \
        || die "building $MANAGER_IMAGE failed (see the build output above)."
    drop_replaced "$MANAGER_IMAGE" "$previous"
}

build_profile() {  # NAME
    local dir="$REPO_ROOT/worker/profiles/$1"
    # Profiles install Debian packages: they build on the worker with the whole Debian system
    # (every stage but the last is the worker's own, from the cache).
    build_project_image "$WORKER_DEBIAN_IMAGE" worker/Dockerfile --build-arg WORKER_ROOT=debian
    local previous; previous=$(image_id "claude-$1")
    say "building claude-$1 (worker/profiles/$1/Dockerfile, FROM $WORKER_DEBIAN_IMAGE)"
    docker_build "${no_cache[@]+"${no_cache[@]}"}" \
        --build-arg WORKER_IMAGE="$WORKER_DEBIAN_IMAGE" --build-arg EXTRA_CA_CERTS="$EXTRA_CA_CERTS" \
        -t "claude-$1" "$dir" \
        || die "building claude-$1 failed (see the build output above; profiles may need more of the internet than PyPI and Debian)."
    drop_replaced "claude-$1" "$previous"
}

if [[ "$only" == "" || "$only" == manager ]]; then
    [[ -x "$REPO_ROOT/entrypoint.sh" ]] \
        || die "$REPO_ROOT/entrypoint.sh is missing or not executable (chmod +x entrypoint.sh); the manager image starts with it."
fi

start_s=$(date +%s.%N)
say "Docker engine $(docker info --format '{{.ServerVersion}}'), building with $builder"
if [[ ${#ca_certs[@]} -gt 0 ]]; then
    say "downloads inside the builds also trust: ${ca_certs[*]}"
fi
built=()

resolve_base
case "$only" in
    base) built+=("$BASE_IMAGE") ;;
    cli) build_cli; built+=("$CLI_IMAGE") ;;
    worker) build_cli; build_project_image "$WORKER_IMAGE" worker/Dockerfile; built+=("$WORKER_IMAGE") ;;
    manager) build_cli; build_manager; built+=("$MANAGER_IMAGE") ;;
    "")
        build_cli
        build_project_image "$WORKER_IMAGE" worker/Dockerfile
        build_manager
        built+=("$BASE_IMAGE" "$CLI_IMAGE" "$WORKER_IMAGE" "$MANAGER_IMAGE")
        for p in "${profiles[@]+"${profiles[@]}"}"; do
            build_profile "$p"; built+=("claude-$p")
        done ;;
    *)  # a profile
        build_cli
        build_profile "$only"; built+=("claude-$only") ;;
esac

elapsed=$(awk -v s="$start_s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
say "done in ${elapsed}s; image sizes:"
for image in "${built[@]}"; do
    docker image inspect --format '{{.Size}}' "$image" \
        | awk -v name="$image" '{ printf "  %-40s %8.0f MB\n", name, $1 / 1e6 }'
done
