"""Providers translate corral requests into HTTP request descriptions and answers back
into corral types. They do no I/O, read no environment and never sleep."""
