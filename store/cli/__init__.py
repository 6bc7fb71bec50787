"""Command-line layer: parse flags, call the engine, render, map errors to exit codes."""
