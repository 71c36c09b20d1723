"""The pieces of ``benchmarks/reproduce.py``: the paper's tables, their evaluation, their files.

- :mod:`.tables` - what each table measures (settings) and the paper's figures beside them.
- :mod:`.evaluate` - one setting over a split: maps once, masks with and without each CRF, mIoU;
  results cached on disk, so an interrupted study resumes without recomputing them.
- :mod:`.output` - a table as Markdown, CSV (+ per-class CSV) and a chart.
- :mod:`.parts` - the model and data from a config (LightningCLI) and training by the CLI.
"""
