#!/usr/bin/env bash
# The manager container's start: git identity and credentials, the clone of REPO_URL at
# REPO_BRANCH, Claude Code's settings (no onboarding, the clone trusted, the orchestrator commands
# allowed), then `claude` with system-prompt.md appended. With arguments, it runs them instead of
# claude, in the same prepared environment (e.g. `./run.sh --repo ... -- bash`).
#
# Environment: REPO_URL, REPO_BRANCH (default main), ANTHROPIC_MODEL, GIT_USER_NAME,
# GIT_USER_EMAIL, ORCHESTRATOR_MAX_WORKERS, ORCHESTRATOR_SIMULATE=1 (the scripted model stands in
# for Claude; its scenarios: ORCHESTRATOR_MANAGER_SCENARIOS), ORCHESTRATOR_WORKER_MOUNTS. Secrets are files in $ORCHESTRATOR_SECRETS_DIR
# (default /run/orchestrator-secrets), one per name: CLAUDE_CODE_OAUTH_TOKEN, ANTHROPIC_API_KEY,
# ANTHROPIC_AUTH_TOKEN, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, GIT_SSH_KEY,
# GIT_TOKEN. They are read here into claude's environment, never echoed.
# ORCHESTRATOR_CONTINUE=1 (./run.sh --continue): resume the newest manager session of this
# volume for the same clone (sessions are kept in /orchestration/manager/sessions/).
set -euo pipefail

SECRETS_DIR=${ORCHESTRATOR_SECRETS_DIR:-/run/orchestrator-secrets}
WORKSPACE=${ORCHESTRATOR_WORKSPACE:-/workspace}
REPO_BRANCH=${REPO_BRANCH:-main}
STATE_DIR=${ORCHESTRATOR_STATE_DIR:-/tmp/orchestrator-manager}
MANAGER_SCENARIOS=${ORCHESTRATOR_MANAGER_SCENARIOS:-/opt/claude-orchestrator/scenarios}
MODEL_SECRETS=(CLAUDE_CODE_OAUTH_TOKEN ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN AWS_ACCESS_KEY_ID
    AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN)
SIMULATED_API_KEY=sk-ant-simulated-manager-key-for-the-scripted-model-0000
RET_ENVIRONMENT=3

die() {
    printf 'entrypoint: %s\n' "$*" >&2
    exit $RET_ENVIRONMENT
}

redact() { sed -E 's#(://)[^/@[:space:]]+@#\1***@#g'; }

configure_git() {
    git config --global user.name "${GIT_USER_NAME:-Claude Orchestrator}"
    git config --global user.email "${GIT_USER_EMAIL:-orchestrator@claude-orchestrator.invalid}"
    # The repository may be a host directory owned by another uid (a local repo mounted in).
    git config --global --replace-all safe.directory '*'
    if [[ -r "$SECRETS_DIR/GIT_SSH_KEY" ]]; then
        install -d -m 0700 ~/.ssh
        install -m 0600 "$SECRETS_DIR/GIT_SSH_KEY" ~/.ssh/orchestrator_key
        git config --global core.sshCommand \
            "ssh -i ~/.ssh/orchestrator_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
    fi
    if [[ -r "$SECRETS_DIR/GIT_TOKEN" ]]; then
        # The helper reads the token when git asks; it is never in a config file or an argument.
        git config --global credential.helper \
            "!f() { echo username=\${GIT_TOKEN_USER:-x-access-token}; printf 'password=%s\\n' \"\$(cat '$SECRETS_DIR/GIT_TOKEN')\"; }; f"
    fi
}

load_model_credentials() {
    local name file
    for name in "${MODEL_SECRETS[@]}"; do
        file=$SECRETS_DIR/$name
        if [[ -z "${!name:-}" && -r "$file" ]]; then
            export "$name=$(tr -d '\r\n' < "$file")"
        fi
    done
}

start_scripted_model() {
    # The manager's own model in simulation mode: the scripted endpoint on the loopback. Workers
    # get theirs from `orchestrator spawn --simulate` (a container on the Docker network).
    local port_file=$STATE_DIR/scripted-model.port
    rm -f "$port_file"
    # The manager's scenarios (manager/scenarios/) come first; a worker's model never sees them.
    local scenarios=()
    [[ -d "$MANAGER_SCENARIOS" ]] && scenarios=(--scenarios "$MANAGER_SCENARIOS")
    scripted-model --host 127.0.0.1 --port 0 --port-file "$port_file" --quiet \
        --log-file "$STATE_DIR/scripted-model.jsonl" "${scenarios[@]+"${scenarios[@]}"}" \
        >"$STATE_DIR/scripted-model.out" 2>"$STATE_DIR/scripted-model.log" &
    SCRIPTED_MODEL_PID=$!
}

wait_for_scripted_model() {
    local port_file=$STATE_DIR/scripted-model.port
    for _ in $(seq 100); do
        if [[ -s "$port_file" ]]; then
            unset CLAUDE_CODE_OAUTH_TOKEN ANTHROPIC_AUTH_TOKEN CLAUDE_CODE_USE_BEDROCK CLAUDE_CODE_USE_VERTEX
            ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$port_file")"
            export ANTHROPIC_BASE_URL
            export ANTHROPIC_API_KEY=$SIMULATED_API_KEY
            return 0
        fi
        kill -0 "$SCRIPTED_MODEL_PID" 2>/dev/null || break
        sleep 0.05
    done
    die "the scripted model did not start: $(tail -n 1 "$STATE_DIR/scripted-model.log" 2>/dev/null)"
}

clone_repository() {
    if [[ -z "${REPO_URL:-}" ]]; then
        WORKDIR=$WORKSPACE
        mkdir -p "$WORKDIR"
        return 0
    fi
    local name=${REPO_URL%/}
    name=${name##*/}
    name=${name##*:}
    name=${name%.git}
    WORKDIR=$WORKSPACE/${name:-repo}
    if [[ -d "$WORKDIR/.git" ]]; then
        git -C "$WORKDIR" fetch --quiet origin 2>/dev/null || true
        return 0
    fi
    mkdir -p "$WORKSPACE"
    local error
    if ! error=$(git clone --quiet --branch "$REPO_BRANCH" "$REPO_URL" "$WORKDIR" 2>&1); then
        die "could not clone $(printf '%s' "$REPO_URL" | redact) at branch $REPO_BRANCH ($(printf '%s' "$error" | tail -n 1 | redact)); check --repo, --branch and the SSH key or token."
    fi
}

# --- the manager's own conversation, kept in the volume (./run.sh --continue) ------------------
SESSIONS_DIR=${ORCHESTRATOR_SESSIONS_DIR:-${ORCHESTRATION_DIR:-/orchestration}/manager/sessions}
SESSION_SAVE_S=${ORCHESTRATOR_SESSION_SAVE_S:-30}

project_dir() {
    # Claude Code's folder of the sessions started in $WORKDIR: every character of the path
    # that is not a letter or a digit becomes '-'.
    printf '%s/projects/%s' "${CLAUDE_CONFIG_DIR:-$HOME/.claude}" "$(printf '%s' "$WORKDIR" | sed 's/[^a-zA-Z0-9]/-/g')"
}

save_sessions() {
    # Only regular *.jsonl session files, into a folder only this user may read (workers' agents
    # share the volume): never a link, never anything else of the config dir.
    local from to file
    from=$(project_dir)
    to=$SESSIONS_DIR/$(basename "$from")
    [[ -d "$from" ]] || return 0
    install -d -m 0700 "$SESSIONS_DIR" "$to" 2>/dev/null || return 0
    for file in "$from"/*.jsonl; do
        [[ -f "$file" && ! -L "$file" ]] || continue
        cp --no-dereference --preserve=timestamps "$file" "$to/.$(basename "$file").tmp" \
            && mv -f "$to/.$(basename "$file").tmp" "$to/$(basename "$file")"
    done
}

restore_sessions() {
    local from to file
    to=$(project_dir)
    from=$SESSIONS_DIR/$(basename "$to")
    [[ -d "$from" && ! -L "$from" ]] || return 0
    mkdir -p "$to"
    for file in "$from"/*.jsonl; do
        [[ -f "$file" && ! -L "$file" ]] || continue
        cp --no-dereference --preserve=timestamps "$file" "$to/"
    done
}

last_session() {
    # The id of the newest session file of $WORKDIR (restored from the volume), if any.
    local newest
    newest=$(ls -t "$(project_dir)"/*.jsonl 2>/dev/null | head -n 1) || true
    [[ -n "$newest" ]] || return 1
    newest=$(basename "$newest" .jsonl)
    [[ "$newest" =~ ^[0-9a-fA-F-]{8,64}$ ]] || return 1
    printf '%s' "$newest"
}

mkdir -p "$STATE_DIR" "$HOME"
simulate=${ORCHESTRATOR_SIMULATE:-0}
[[ "$simulate" == 1 ]] && start_scripted_model
configure_git
clone_repository
if [[ "$simulate" == 1 ]]; then
    wait_for_scripted_model
else
    load_model_credentials
fi
cd "$WORKDIR"
python3 -m manager.session --workdir "$WORKDIR" --prompt-out "$STATE_DIR/system-prompt.md" \
    || die "could not prepare Claude Code's settings (see above)."

if [[ $# -gt 0 ]]; then
    exec "$@"
fi
claude_args=(--append-system-prompt "$(cat "$STATE_DIR/system-prompt.md")")
[[ -z "${ANTHROPIC_MODEL:-}" ]] || claude_args+=(--model "$ANTHROPIC_MODEL")
restore_sessions
if [[ "${ORCHESTRATOR_CONTINUE:-0}" == 1 ]]; then
    if last=$(last_session); then
        echo "entrypoint: resuming the manager's last session $last" >&2
        claude_args+=(--resume "$last")
    else
        echo "entrypoint: no earlier manager session in this volume for $WORKDIR; starting a new one." >&2
    fi
fi
# Claude Code keeps the conversation under $CLAUDE_CONFIG_DIR/projects/<cwd>/, which goes with the
# container: it is saved into the volume every SESSION_SAVE_S and when claude ends.
( while sleep "$SESSION_SAVE_S"; do save_sessions; done ) </dev/null >/dev/null 2>&1 &
saver=$!
status=0
claude "${claude_args[@]}" || status=$?
kill "$saver" 2>/dev/null || true
save_sessions
exit "$status"
