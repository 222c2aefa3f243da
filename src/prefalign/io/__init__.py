"""Files between the steps: atomic writes, the queries and rewards files, observation datasets,
the oracle command runner, listing and progress output. Nothing here knows what a diffusion model
or a surrogate is.

- :mod:`.atomic`: write-to-temporary-then-rename files;
- :mod:`.queries`: a round's queries file (``id``, ``x``) and the oracle's rewards file;
- :mod:`.oracle_command`: runs an oracle command under the contract of ``docs/design.md``
  (time-outs, killing the whole process tree, caps on its output);
- :mod:`.observations`: the append-only observation datasets (Parquet, one per round);
- :mod:`.listing`, :mod:`.progress`: short listings of ids and progress lines for the logs.
"""
