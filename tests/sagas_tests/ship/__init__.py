"""Two deployments of one workflow type (``Ship``), as ``--domain`` modules for the CLI."""
