"""A small Django project that also imports pandas: the app bench/memory.py serves."""
