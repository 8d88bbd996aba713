"""``python -m pulsegate`` entry point."""

from pulsegate.cli import main

raise SystemExit(main())
