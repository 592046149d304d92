"""``python -m eventprop``: the ``eventprop`` console command."""
import sys

from eventprop.tools.cli import main

sys.exit(main())
