"""``python -m edgecomp`` = the ``edgecomp`` command."""

from edgecomp.cli import main

main()
