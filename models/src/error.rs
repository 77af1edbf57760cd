//! The models crate's one error type.

/// Why a model could not be fitted or applied.
#[derive(Debug, Clone, PartialEq)]
pub enum FitError {
    /// Rows of `x` and labels differ in number.
    Shape(String),
    /// A non-finite value in the features, at (row, column).
    NonFinite(usize, usize),
    /// Only one class among the labels: nothing to learn.
    OneClass,
    /// The optimiser failed.
    Solver(String),
    /// A parameter is out of its range (checked before any fit).
    Param(String),
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::Shape(m) => write!(f, "shape mismatch: {m}"),
            FitError::NonFinite(r, c) => {
                write!(f, "non-finite feature value at row {r}, column {c}")
            }
            FitError::OneClass => write!(f, "the labels hold one class only"),
            FitError::Solver(m) => write!(f, "logistic regression did not fit: {m}"),
            FitError::Param(m) => write!(f, "invalid parameter: {m}"),
        }
    }
}

impl std::error::Error for FitError {}
