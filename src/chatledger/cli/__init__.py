"""The ``chatledger`` command line."""
