"""``python -m chatledger.cli``."""

from chatledger.cli.main import main

main()
