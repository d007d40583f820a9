"""pledgeledger's front doors: the HTTP API (FastAPI) and the ``pledgeledger`` command line.

Both are thin: parse, call one :mod:`ledger` use case, shape the answer. No business rules.
"""
