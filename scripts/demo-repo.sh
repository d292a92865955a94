#!/usr/bin/env bash
# scripts/demo-repo.sh DIR: make DIR a bare git repository holding the small demo web app that
# the --simulate scenarios know ("Add dark mode support to the app"). Does nothing when DIR
# already is a repository. run.sh --simulate uses it when no --repo is given.
set -euo pipefail
target=${1:?usage: scripts/demo-repo.sh DIR}
if git -C "$target" rev-parse --git-dir >/dev/null 2>&1; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/app"
printf '# Demo app\n' > "$work/README.md"
printf '<!doctype html>\n<link rel="stylesheet" href="styles.css">\n<h1>Demo</h1>\n' > "$work/app/index.html"
printf ':root {\n  --background: #ffffff;\n  --text: #1a1a1a;\n  --accent: #0066cc;\n}\n' > "$work/app/styles.css"
printf "export const settings = {\n  language: 'en',\n};\n" > "$work/app/settings.js"
git -C "$work" init --quiet --initial-branch=main
git -C "$work" add .
git -C "$work" -c user.name=claude-orchestrator -c user.email=demo@claude-orchestrator.invalid \
    commit --quiet -m "Demo app"
mkdir -p "$(dirname "$target")"
git init --quiet --bare --initial-branch=main "$target"
git -C "$work" push --quiet "$target" main
git -C "$target" config core.sharedRepository world
chmod -R a+rwX "$target"   # the workers (uid 1000) push their branches here
echo "$target"
