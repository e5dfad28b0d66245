//! wsgi (stub)
