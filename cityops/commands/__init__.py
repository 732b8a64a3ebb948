"""The ``cityops`` subcommands, one module per command group."""
