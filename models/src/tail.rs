//! The last columns that complete the rows of a base matrix, so that a
//! model scores the rows under several completions (a hazard's month
//! bands, an offer's arms) without building each completed matrix.

use crate::error::FitError;

/// The last columns that complete each row of a base matrix: the same for
/// every row (a hazard's month band) or a row of its own for each (an offer
/// arm's indicator and interaction columns).
#[derive(Debug, Clone, Copy)]
pub struct Tail<'a> {
    values: &'a [f64],
    /// Values per row; 0 when every row has the same tail.
    stride: usize,
    width: usize,
}

impl<'a> Tail<'a> {
    /// The same `values` completing every row.
    pub fn same(values: &'a [f64]) -> Self {
        Tail {
            values,
            stride: 0,
            width: values.len(),
        }
    }

    /// Row `r` completed by `values[r * width..(r + 1) * width]`.
    pub fn per_row(values: &'a [f64], width: usize) -> Self {
        Tail {
            values,
            stride: width,
            width,
        }
    }

    /// Whether every row has the same tail.
    pub fn is_same(&self) -> bool {
        self.stride == 0
    }

    /// Columns in the tail.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The tail of row `r`.
    pub fn row(&self, r: usize) -> &'a [f64] {
        let at = r * self.stride;
        &self.values[at..at + self.width]
    }

    /// Fails unless the tail holds a row for each of `rows` rows.
    pub fn check(&self, rows: usize) -> Result<(), FitError> {
        if self.stride > 0 && self.values.len() != rows * self.width {
            return Err(FitError::Shape(format!(
                "{} tail values for {rows} rows of {} columns",
                self.values.len(),
                self.width
            )));
        }
        Ok(())
    }
}
