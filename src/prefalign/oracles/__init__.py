"""Oracle commands: external programs that read a round's queries and write its rewards.

Every oracle follows the contract in ``docs/design.md`` ("Contracts between steps"): it is run as
``ORACLE_ARGV... QUERIES.npz REWARDS.csv``, reads the queries (arrays ``id`` and ``x``), writes
``REWARDS.csv`` with header ``id,reward`` (one row per query id, finite floats) and exits 0.
:mod:`prefalign.oracles.human` asks a person, through a page served on the local machine.
"""
