"""Processes corral runs: the embedded llama.cpp engine (and, later, managed llama-servers)."""
