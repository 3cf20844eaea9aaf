"""The command line's subcommands, a module each named for what it commands (run · build · plan in ``run``, env,
schema, check, report · compare in ``report``, history, explain, tune, deploy): each adds its parsers and runs its
command; :mod:`optbench.cli` builds the parser from them; the packages they drive never import them."""
