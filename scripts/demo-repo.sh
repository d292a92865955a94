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
# The app's check (python3 is in the worker image; no pytest there): the palette keeps its
# three variables wherever a theme overrides them, and the settings keep their language.
mkdir -p "$work/tests"
cat > "$work/tests/test_app.py" <<'PY'
import re
import unittest
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
VARIABLES = ("--background", "--text", "--accent")


class AppTest(unittest.TestCase):
    def test_the_palette_defines_every_color(self):
        css = (APP / "styles.css").read_text()
        root = re.search(r":root\s*\{([^}]*)\}", css)
        self.assertIsNotNone(root, "styles.css has no :root block")
        for name in VARIABLES:
            self.assertIn(name, root.group(1))

    def test_a_theme_overrides_all_colors_or_none(self):
        css = (APP / "styles.css").read_text()
        for block in re.findall(r"\[data-theme=\"\w+\"\]\s*\{([^}]*)\}", css):
            for name in VARIABLES:
                self.assertIn(name, block)

    def test_the_settings_keep_their_language(self):
        self.assertIn("language:", (APP / "settings.js").read_text())


if __name__ == "__main__":
    unittest.main()
PY
printf 'check: python3 -m unittest discover -s tests -v\n' > "$work/.orchestrator.yaml"
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
