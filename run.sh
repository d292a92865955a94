#!/usr/bin/env bash
# Start the claude-orchestrator manager: Claude Code, interactive, in the claude-orchestrator
# container, with the Docker socket (to start workers), the shared volume, and the credentials
# mounted read-only as files (never on a command line, never in `docker inspect`).
#
#   ./run.sh --repo git@github.com:you/app.git         # then talk to the manager
#   ./run.sh --simulate --repo /srv/git/app.git        # dry run: scripted model, no credentials
#
# Run with --help for the options. Exit codes: 0 the manager ended normally, 2 bad usage,
# 3 the machine is not ready (Docker, images, credentials, key); otherwise the manager's own.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RET_USAGE=2
RET_ENVIRONMENT=3

MANAGER_IMAGE=${ORCHESTRATOR_MANAGER_IMAGE:-claude-orchestrator}
WORKER_IMAGE=${ORCHESTRATOR_WORKER_IMAGE:-claude-worker}
SECRETS_DIR=/run/orchestrator-secrets
# Non-secret settings handed to the manager as they are, when set in this shell.
PASSTHROUGH_ENV=(ANTHROPIC_BASE_URL ANTHROPIC_SMALL_FAST_MODEL CLAUDE_CODE_USE_BEDROCK
    CLAUDE_CODE_USE_VERTEX AWS_REGION AWS_DEFAULT_REGION ANTHROPIC_VERTEX_PROJECT_ID
    CLOUD_ML_REGION GIT_USER_NAME GIT_USER_EMAIL)
# Secrets taken from this shell's environment: each goes in as a read-only file.
SECRET_ENV=(ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    AWS_SESSION_TOKEN GOOGLE_OAUTH_ACCESS_TOKEN GIT_TOKEN)

usage() {
    cat <<'EOF'
Usage: ./run.sh --repo URL [OPTIONS] [-- COMMAND...]

Start the claude-orchestrator manager (Claude Code in the claude-orchestrator container) and talk
to it: it splits your request into tasks, runs one worker container per task, waits, merges
their branches into orchestrator/integration and tells you what changed.

Options:
  --repo URL          repository to work on (git URL, or a path to a local repository, which
                      is mounted at the same path); default $REPO_URL; with --simulate and
                      no repository, a demo app made in ~/.cache/claude-orchestrator
  --branch NAME       branch to start from (default: main, or $REPO_BRANCH)
  --token FILE        file holding a Claude Code OAuth token, made with `claude setup-token`
                      (default: ~/.claude-token); not needed with ANTHROPIC_API_KEY, Bedrock
                      or Vertex set, nor with --simulate
  --ssh-key FILE      private key for git over SSH (default: ~/.ssh/id_ed25519, if present)
  --model NAME        model for the manager and its workers (ANTHROPIC_MODEL)
  --max-workers N     most workers the manager runs at once (default 4)
  --simulate          dry run: a scripted model stands in for Claude (no credentials, no cost)
  --continue          resume the manager's last conversation kept in the volume (same --repo)
  --volume NAME       shared volume for tasks and results (default: orchestration-PROJECT)
  --network NAME      Docker network for the manager and its gateway (default:
                      orchestrator-net-PROJECT)
  --name NAME         the manager container's name (default: orchestrator-manager-PROJECT)
  --list              list the managers running on this engine (name, repository, volume)
  -h, --help          show this help

  -- COMMAND...       run COMMAND in the prepared container instead of claude (e.g. -- bash);
                      when the project's manager runs already, COMMAND runs in it (docker exec)

Projects: PROJECT is the repository's name and a short hash of its URL (or resolved path), e.g.
app-3f2a9c1e for git@github.com:you/app.git, so each repository gets its own volume, network and
manager, and two repositories run side by side. The same repository again while its manager
runs: `./run.sh --repo URL -- bash` opens a shell in that manager, `docker attach NAME` reaches
its prompt. The state of an older run.sh (volume orchestration-volume) stays reachable with
--volume orchestration-volume.

Environment: ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, ANTHROPIC_BASE_URL; Bedrock:
CLAUDE_CODE_USE_BEDROCK=1 with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
AWS_REGION; Vertex: CLAUDE_CODE_USE_VERTEX=1, ANTHROPIC_VERTEX_PROJECT_ID, CLOUD_ML_REGION,
GOOGLE_OAUTH_ACCESS_TOKEN; GIT_TOKEN (HTTPS pushes); GIT_USER_NAME, GIT_USER_EMAIL (default:
your git config). Secrets reach the manager and the gateway as read-only files, never as
command-line arguments, and never a worker.

Warning: the manager gets the Docker socket, which gives it root on this machine.
EOF
}

die() {  # CODE MESSAGE
    printf 'run.sh: %s\n' "$2" >&2
    exit "$1"
}

need_value() {  # OPTION COUNT
    [[ $2 -ge 2 ]] || die $RET_USAGE "$1 needs a value (see ./run.sh --help)."
}

require_docker() {
    command -v docker >/dev/null 2>&1 \
        || die $RET_ENVIRONMENT "Docker is not installed; install it (on Debian: apt-get install docker.io) and run again."
    local docker_err
    if ! docker_err=$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null); then
        case "$docker_err" in
            *"permission denied"*)
                die $RET_ENVIRONMENT "no permission to use the Docker socket; run as root or join the 'docker' group (then log in again)." ;;
            *)
                die $RET_ENVIRONMENT "the Docker engine is not running; start it (systemctl start docker) or point DOCKER_HOST at one." ;;
        esac
    fi
}

repo=${REPO_URL:-}
branch=${REPO_BRANCH:-main}
token_file=~/.claude-token
token_given=0
ssh_key=~/.ssh/id_ed25519
key_given=0
model=${ANTHROPIC_MODEL:-}
max_workers=${ORCHESTRATOR_MAX_WORKERS:-4}
simulate=0
volume=${ORCHESTRATOR_VOLUME:-}
network=${ORCHESTRATOR_NETWORK:-}
name=""
list=0
command=()
original_args=()  # what to say again to go on with the conversation (--continue left out)
for arg in "$@"; do [[ "$arg" == --continue ]] || original_args+=("$arg"); done

while [[ $# -gt 0 ]]; do
    case "$1" in
        --repo) need_value "$1" $#; repo=$2; shift ;;
        --repo=*) repo=${1#*=} ;;
        --branch) need_value "$1" $#; branch=$2; shift ;;
        --branch=*) branch=${1#*=} ;;
        --token) need_value "$1" $#; token_file=$2; token_given=1; shift ;;
        --token=*) token_file=${1#*=}; token_given=1 ;;
        --ssh-key) need_value "$1" $#; ssh_key=$2; key_given=1; shift ;;
        --ssh-key=*) ssh_key=${1#*=}; key_given=1 ;;
        --model) need_value "$1" $#; model=$2; shift ;;
        --model=*) model=${1#*=} ;;
        --max-workers) need_value "$1" $#; max_workers=$2; shift ;;
        --max-workers=*) max_workers=${1#*=} ;;
        --simulate) simulate=1 ;;
        --continue) continue_session=1 ;;
        --volume) need_value "$1" $#; volume=$2; shift ;;
        --volume=*) volume=${1#*=} ;;
        --network) need_value "$1" $#; network=$2; shift ;;
        --network=*) network=${1#*=} ;;
        --name) need_value "$1" $#; name=$2; shift ;;
        --name=*) name=${1#*=} ;;
        --list) list=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; command=("$@"); break ;;
        *) die $RET_USAGE "unknown option '$1' (see ./run.sh --help)." ;;
    esac
    shift
done

# --- the managers running on this engine ------------------------------------------------------

if [[ "$list" == 1 ]]; then
    require_docker
    printf 'MANAGER\tREPOSITORY\tVOLUME\tSTATUS\n'
    exec docker ps --filter label=orchestrator.role=manager \
        --format '{{.Names}}\t{{.Label "orchestrator.repo"}}\t{{.Label "orchestrator.volume"}}\t{{.Status}}'
fi

# --- the request -------------------------------------------------------------------------------

if [[ -z "$repo" && "$simulate" == 1 ]]; then
    # A dry run needs no repository of yours: the demo app the scenarios know is made once.
    repo="${XDG_CACHE_HOME:-$HOME/.cache}/claude-orchestrator/demo-app.git"
    "$REPO_ROOT/scripts/demo-repo.sh" "$repo" >/dev/null \
        || die $RET_ENVIRONMENT "could not make the demo repository $repo; pass --repo URL instead."
    echo "run.sh: --simulate without --repo: using the demo app at $repo" >&2
fi
[[ -n "$repo" ]] || die $RET_USAGE "no repository given; pass --repo URL (a git URL or a local path), or --simulate alone for the demo app."
[[ "$max_workers" =~ ^[1-9][0-9]*$ ]] \
    || die $RET_USAGE "--max-workers must be a whole number of at least 1, not '$max_workers'."

# A local repository (a path, or file://) is mounted into the manager at the same path; workers
# never see it (they clone from the manager's mirror in the volume).
repo_mount=""
case "$repo" in
    file://*) local_path=${repo#file://} ;;
    *://*|*@*:*) local_path="" ;;
    *) local_path=$repo ;;
esac
if [[ -n "$local_path" ]]; then
    [[ -d "$local_path" ]] \
        || die $RET_USAGE "the repository $local_path is not a directory; pass a git URL or the path of a local repository."
    local_path=$(cd "$local_path" && pwd -P)
    repo=$local_path
    repo_mount=$local_path
fi

# --- Docker ------------------------------------------------------------------------------------

require_docker
socket=/var/run/docker.sock
if [[ "${DOCKER_HOST:-}" == unix://* ]]; then
    socket=${DOCKER_HOST#unix://}
elif [[ -n "${DOCKER_HOST:-}" ]]; then
    die $RET_ENVIRONMENT "DOCKER_HOST=$DOCKER_HOST is not a local socket; the manager needs the engine's unix socket to start workers."
fi

# --- the project: its volume, network and manager ----------------------------------------------

# PROJECT = the repository's name and the first 8 hex digits of the SHA-256 of its URL (or of
# its resolved path), so every repository gets names of its own and the same one always the same.
project_of() {  # REPO
    local url=${1%/} base hash
    base=${url%.git}
    base=${base##*/}
    base=${base##*:}
    base=${base,,}
    base=${base//[^a-z0-9]/-}
    base=${base:0:24}
    base=${base##-}
    base=${base%%-}
    hash=$(printf '%s' "$url" | sha256sum)
    printf '%s-%s' "${base:-repo}" "${hash:0:8}"
}
project=$(project_of "$repo")
volume=${volume:-orchestration-$project}
network=${network:-orchestrator-net-$project}
name=${name:-orchestrator-manager-$project}

tty_args=(-i)
[[ -t 0 && -t 1 ]] && tty_args=(-it)

# The same project again: a command runs in its running manager; else one sentence says how.
if [[ "$(docker container inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" == true ]]; then
    if [[ ${#command[@]} -gt 0 ]]; then
        exec docker exec "${tty_args[@]}" "$name" "${command[@]}"
    fi
    die $RET_ENVIRONMENT "the manager $name runs already for $repo; reach its prompt with 'docker attach $name' (leave with Ctrl-P Ctrl-Q), or run a command in it with './run.sh --repo $repo -- bash'."
fi
if docker container inspect "$name" >/dev/null 2>&1; then
    die $RET_ENVIRONMENT "a container named $name exists already but does not run; remove it with 'docker rm -f $name' and run again."
fi
other=$(docker ps --filter label=orchestrator.role=manager --filter "label=orchestrator.volume=$volume" --format '{{.Names}}' 2>/dev/null || true)
if [[ -n "$other" ]]; then
    die $RET_ENVIRONMENT "the volume $volume is in use by the manager ${other%%$'\n'*}; reach it with 'docker attach ${other%%$'\n'*}', or give this one its own with --volume NAME."
fi

# --- credentials -------------------------------------------------------------------------------

mounts=()
secret_tmp=""
# shellcheck disable=SC2317  # called from traps
cleanup() { [[ -z "$secret_tmp" ]] || rm -rf "$secret_tmp"; }
trap cleanup EXIT

mount_secret() {  # FILE NAME
    mounts+=(--mount "type=bind,source=$1,target=$SECRETS_DIR/$2,readonly")
}

secret_from_env() {  # NAME: the variable's value into a private file, mounted read-only
    if [[ -z "$secret_tmp" ]]; then
        secret_tmp=$(mktemp -d "${TMPDIR:-/tmp}/orchestrator-secrets.XXXXXX")
        chmod 0700 "$secret_tmp"
    fi
    (umask 077; printf '%s' "${!1}" > "$secret_tmp/$1")
    mount_secret "$secret_tmp/$1" "$1"
}

absolute() { [[ "$1" == /* ]] && printf '%s' "$1" || printf '%s/%s' "$PWD" "$1"; }

if [[ $simulate -eq 0 ]]; then
    has_other_credentials=0
    for var in ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_USE_BEDROCK CLAUDE_CODE_USE_VERTEX; do
        [[ -n "${!var:-}" ]] && has_other_credentials=1
    done
    if [[ -r "$token_file" && -f "$token_file" ]]; then
        mount_secret "$(absolute "$token_file")" CLAUDE_CODE_OAUTH_TOKEN
    elif [[ $token_given -eq 1 || $has_other_credentials -eq 0 ]]; then
        die $RET_ENVIRONMENT "the token file $token_file is missing or unreadable; make one with 'claude setup-token > ~/.claude-token', pass --token FILE, set ANTHROPIC_API_KEY, or try --simulate."
    fi
    for var in "${SECRET_ENV[@]}"; do
        [[ -z "${!var:-}" ]] || secret_from_env "$var"
    done
else
    [[ -z "${GIT_TOKEN:-}" ]] || secret_from_env GIT_TOKEN
fi

if [[ -e "$ssh_key" || $key_given -eq 1 ]]; then
    [[ -f "$ssh_key" && -r "$ssh_key" ]] \
        || die $RET_ENVIRONMENT "the SSH key $ssh_key cannot be read; fix its permissions or pass --ssh-key FILE."
    mount_secret "$(absolute "$ssh_key")" GIT_SSH_KEY
fi

# --- images, volume, network -------------------------------------------------------------------

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
if ! image_exists "$MANAGER_IMAGE" || ! image_exists "$WORKER_IMAGE"; then
    printf 'run.sh: building the images first (scripts/build-images.sh; once, takes a few minutes)\n' >&2
    "$REPO_ROOT/scripts/build-images.sh" \
        || die $RET_ENVIRONMENT "building the images failed (see above); run scripts/build-images.sh --offline and try again."
fi
docker volume inspect "$volume" >/dev/null 2>&1 || docker volume create "$volume" >/dev/null
network_made=0
if ! docker network inspect "$network" >/dev/null 2>&1; then
    docker network create --label orchestrator.role=network --label "orchestrator.project=$project" "$network" >/dev/null
    network_made=1
fi

# --- the manager -------------------------------------------------------------------------------

env_args=(
    -e "REPO_URL=$repo"
    -e "REPO_BRANCH=$branch"
    -e "ORCHESTRATOR_MAX_WORKERS=$max_workers"
    -e "ORCHESTRATOR_VOLUME=$volume"
    -e "ORCHESTRATOR_NETWORK=$network"
    -e "ORCHESTRATOR_SIMULATE=$simulate"
    -e "ORCHESTRATOR_WORKER_IMAGE=$WORKER_IMAGE"
    -e "TERM=${TERM:-xterm-256color}"
)
[[ -z "$model" ]] || env_args+=(-e "ANTHROPIC_MODEL=$model")
[[ "${continue_session:-0}" != 1 ]] || env_args+=(-e "ORCHESTRATOR_CONTINUE=1")
GIT_USER_NAME=${GIT_USER_NAME:-$(git config --get user.name 2>/dev/null || true)}
GIT_USER_EMAIL=${GIT_USER_EMAIL:-$(git config --get user.email 2>/dev/null || true)}
for var in "${PASSTHROUGH_ENV[@]}"; do
    [[ -z "${!var:-}" ]] || env_args+=(-e "$var=${!var}")
done
if [[ -n "$repo_mount" ]]; then
    mounts+=(--mount "type=bind,source=$repo_mount,target=$repo_mount")
fi

# Closing the terminal (SIGHUP) or `kill` (SIGTERM) ends the docker client, not the container:
# stop the manager then too. Detaching on purpose (Ctrl-P Ctrl-Q) leaves it running.
# shellcheck disable=SC2317  # called from traps
stop_manager() { docker stop --time 10 "$name" >/dev/null 2>&1 || true; }
# A dry run leaves nothing running: once the manager has ended (not detached) and no worker of
# its volume runs, the gateway of the volume goes, and so does the scripted model it started
# unless another volume's gateway still forwards to it.
# shellcheck disable=SC2317  # called from traps
end_simulation() {
    [[ "$simulate" == 1 ]] || return 0
    [[ "$(docker container inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" == true ]] && return 0
    local root="volume:$volume" id model users
    [[ -z "$(docker ps -q --filter label=orchestrator.role=worker --filter "label=orchestrator.root=$root" 2>/dev/null)" ]] || return 0
    for id in $(docker ps -aq --filter label=orchestrator.role=gateway --filter "label=orchestrator.root=$root" 2>/dev/null); do
        docker rm -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(docker ps -aq --filter label=orchestrator.role=scripted-model --filter "label=orchestrator.root=$root" 2>/dev/null); do
        model=$(docker inspect -f '{{.Name}}' "$id" 2>/dev/null) || continue
        users=$(docker ps -q --filter label=orchestrator.role=gateway 2>/dev/null \
            | xargs -r docker inspect -f '{{join .Args " "}}' 2>/dev/null | grep -c "http://${model#/}:" || true)
        [[ "$users" -gt 0 ]] || docker rm -f "$id" >/dev/null 2>&1 || true
    done
    # the network it made goes too, unless something (a shared scripted model) still uses it
    [[ "$network_made" == 0 ]] || docker network rm "$network" >/dev/null 2>&1 || true
}
trap 'stop_manager; end_simulation; cleanup; exit 129' HUP
trap 'stop_manager; end_simulation; cleanup; exit 143' TERM

status=0
docker run --rm --init "${tty_args[@]}" \
    --name "$name" \
    --label orchestrator.role=manager \
    --label "orchestrator.project=$project" \
    --label "orchestrator.repo=$repo" \
    --label "orchestrator.volume=$volume" \
    --network "$network" \
    --mount "type=bind,source=$socket,target=/var/run/docker.sock" \
    --mount "type=volume,source=$volume,target=/orchestration" \
    "${mounts[@]+"${mounts[@]}"}" \
    "${env_args[@]}" \
    "$MANAGER_IMAGE" "${command[@]+"${command[@]}"}" || status=$?
end_simulation
# Claude Code's own "claude --resume ID" hint cannot work here: the container is gone. The
# session is kept in the volume; this is how to go on with it.
if [[ ${#command[@]} -eq 0 && -t 1 ]]; then
    echo "run.sh: go on with this conversation with: $0 ${original_args[*]+${original_args[*]} }--continue" >&2
fi
exit "$status"
