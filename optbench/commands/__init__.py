"""The command line's subcommands that live beside ``optbench.cli`` (check, report, compare, history, explain,
tune): each module adds its parsers and runs its command; the packages they drive never import them."""
