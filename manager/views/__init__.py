"""What the CLI shows people: the rich status table, the live board, following the volume for
``wait`` and ``watch``, and workers' logs."""
