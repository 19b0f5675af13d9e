"""`python -m presence_gateway ...` is the `presence-gateway` command."""

import sys

from presence_gateway.cli import main

sys.exit(main())
