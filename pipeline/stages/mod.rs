//! Pipeline stages. Each is a function from typed tables (polars frames) and
//! its own settings to typed results; none opens a path, reads the clock or
//! the environment. The catalog does the I/O around them.

pub mod validate;
