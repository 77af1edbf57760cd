//! `score`: a model version applied to the subscribers active and lapsed
//! at the as-of date: each active subscriber's P(churn within the horizon)
//! with its risk decile and realised value, and each lapsed subscriber's
//! P(return) under every arm.

use polars::prelude::*;
use tracing::warn;

use crate::artifact::{Model, ModelSet};
use crate::error::{Error, Result};
use crate::schema::{ARMS, col};
use crate::stages::features::{Current, Unseen, f};

/// The score frames, and the values scored as `other`.
pub struct Scores {
    /// `subscriber_id`, `p_churn`, `risk_decile`, `realised_value` (absent
    /// when the version has no churn model).
    pub churn: Option<DataFrame>,
    /// `subscriber_id`, `churned_at`, `leave_reason`, `days_since_defection`
    /// and `p_return_<arm>` per arm (absent without a return model).
    pub returns: Option<DataFrame>,
    /// Per model and one-hot feature, values null or not seen in training.
    pub unseen: Vec<(String, usize)>,
}

fn column(df: &DataFrame, name: &str) -> Result<Column> {
    df.column(name)
        .cloned()
        .map_err(Error::polars(format!("score: {name}")))
}

/// Scores the features of `current` with the models of `models`.
pub fn score(current: &Current, models: &ModelSet) -> Result<Scores> {
    let mut unseen: Vec<(String, usize)> = Vec::new();
    let mut note_unseen = |m: &Model, u: Unseen| {
        for (name, n) in u {
            if n > 0 {
                unseen.push((format!("{}.{name}", m.model), n));
            }
        }
    };
    let churn = match &models.churn {
        Some(m) => {
            let _span =
                tracing::debug_span!("churn scores", rows = current.active.height()).entered();
            let df = &current.active;
            let (mut p, u) = m.predict_arms(df, &[None])?;
            note_unseen(m, u);
            let p = p.pop().unwrap_or_default();
            let decile = risk_deciles(&p);
            Some(
                DataFrame::new(
                    df.height(),
                    vec![
                        column(df, col::SUBSCRIBER_ID)?,
                        Column::new("p_churn".into(), p),
                        Column::new("risk_decile".into(), decile),
                        column(df, f::VALUE_TO_DATE)?.with_name("realised_value".into()),
                    ],
                )
                .map_err(Error::polars("score: churn scores"))?,
            )
        }
        None => {
            warn!("the model version has no churn model: churn_scores.parquet not written");
            None
        }
    };
    let returns = match &models.return_model {
        Some(m) => {
            let _span =
                tracing::debug_span!("return scores", rows = current.lapsed.height()).entered();
            let df = &current.lapsed;
            let mut columns = vec![
                column(df, col::SUBSCRIBER_ID)?,
                column(df, col::CHURNED_AT)?,
                column(df, f::LEAVE_REASON)?,
                column(df, f::DAYS_SINCE_DEFECTION)?,
            ];
            let arms: Vec<Option<&str>> = ARMS.iter().map(|a| Some(*a)).collect();
            let (p, u) = m.predict_arms(df, &arms)?;
            note_unseen(m, u);
            for (arm, p) in ARMS.iter().zip(p) {
                columns.push(Column::new(format!("p_return_{arm}").into(), p));
            }
            Some(
                DataFrame::new(df.height(), columns)
                    .map_err(Error::polars("score: return scores"))?,
            )
        }
        None => {
            warn!("the model version has no return model: return_scores.parquet not written");
            None
        }
    };
    Ok(Scores {
        churn,
        returns,
        unseen,
    })
}

/// Decile of risk per row: 1 for the highest tenth of probabilities.
pub fn risk_deciles(p: &[f64]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    let mut d = vec![0u32; p.len()];
    for (rank, i) in order.into_iter().enumerate() {
        d[i] = (rank * 10 / p.len().max(1)) as u32 + 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_put_the_highest_risk_first_in_equal_tenths() {
        let p: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
        let d = risk_deciles(&p);
        assert_eq!(d[99], 1);
        assert_eq!(d[0], 10);
        for k in 1..=10 {
            assert_eq!(d.iter().filter(|x| **x == k).count(), 10);
        }
    }
}
