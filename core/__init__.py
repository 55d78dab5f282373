"""The bottom layer every other package uses: errors, registries, atomic I/O, the checkpoint file format, config
parsing. It imports nothing of the project's other packages."""
