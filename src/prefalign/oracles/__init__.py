"""Oracles shipped with the tool: external programs that read a round's queries and write its
rewards.

Every oracle follows the contract in ``docs/design.md`` ("Contracts between steps"): it is run as
``ORACLE_ARGV... QUERIES.npz REWARDS.csv``, reads the queries (arrays ``id`` and ``x``), writes
``REWARDS.csv`` with header ``id,reward`` (one row per query id, finite floats) and exits 0
(formats: :mod:`prefalign.io.queries`; the runner: :mod:`prefalign.io.oracle_command`).

- :mod:`.builtin`: the domains' simulated users (``prefalign oracle builtin DOMAIN USER``), and
  :func:`~.builtin.answer_in_process` for studies that run campaigns in one process;
- :mod:`.human`: a person, through a rating page served on the local machine.
"""
