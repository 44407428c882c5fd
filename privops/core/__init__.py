"""The pure domain: records, vocabulary and every rule privops applies, with no I/O.

Nothing here imports faust, aiokafka, httpx, sqlite3, rich, typer, or any other part of
privops (an import contract in ``make test`` checks it). Functions take ``now``.
"""
