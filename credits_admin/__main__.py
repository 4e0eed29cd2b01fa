"""`python -m credits_admin ...`, the same as the `credits-admin` console script."""

from credits_admin.cli import main

raise SystemExit(main())
