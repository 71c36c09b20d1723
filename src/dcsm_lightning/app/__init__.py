"""The ``dcsm-lightning`` command: the LightningCLI (``cli``), its base (``base``), the
subcommands' trainer (``trainer``), defaults read from a checkpoint (``checkpoint_defaults``),
SIGTERM handling (``signals``) and one-line user errors (``error_report``)."""
