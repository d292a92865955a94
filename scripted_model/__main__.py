"""``python -m scripted_model``: the same as the ``scripted-model`` command."""

from .server import main

raise SystemExit(main())
