"""`python -m claimsync` is the same as the `claimsync` command."""

from claimsync.cli import main

raise SystemExit(main())
