"""``python -m alrao_edu``: the same command as ``alrao-edu``."""

from .views.cli import main

raise SystemExit(main())
