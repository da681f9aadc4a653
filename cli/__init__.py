"""The ``t2s`` command line: one thin module per command group, each a boundary over the stages in
:mod:`pipelines` and the libraries in :mod:`t2s` and :mod:`evals` (``cli.main`` holds the Typer app)."""
