"""From finished campaigns to what people look at.

- :mod:`.metrics`: per-round and per-campaign metrics;
- :mod:`.comparison`: the evaluations, the final table over seeds, paired differences;
- :mod:`.figures`: reward-vs-queries curves, final-metric bars;
- :mod:`.tables`: Markdown, LaTeX and CSV tables;
- :mod:`.cost`: wall time per rule and per round from Snakemake's benchmark files;
- :mod:`.aggregate`: one experiment's figures, tables and results-page section;
- :mod:`.population`: a population's held-out users with the prior and without, paired by user;
- :mod:`.results_page`: the page that joins the sections;
- :mod:`.render`: sample grids and particle plots;
- :mod:`.distances`: two-sample distances (energy distance) against exact samples.
"""
