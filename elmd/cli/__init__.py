"""The ``elmd`` command line (click). Each command parses, loads a config, calls one library
function; command groups live one per module and are registered in :mod:`elmd.cli.main`."""
