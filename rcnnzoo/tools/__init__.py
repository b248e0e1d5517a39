"""The command-line tools, importable so they also run from an installed package (``rcnnzoo-train``)."""
