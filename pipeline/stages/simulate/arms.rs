//! Every eligible subscriber under every arm: the models' inputs per row
//! (P(return) under the arm, the second lifetime's hazard parts and
//! margin), the point outcomes in bounded blocks, and the column readers
//! the other steps share.

use polars::prelude::*;
use winback_models::economics::{Arm, Economics};
use winback_models::offers::{ArmInputs, Outcome, Simulator};

use crate::artifact::{ReturnModel, SecondLifetimeModel, WON_BACK_BY};
use crate::error::{Error, Result};
use crate::schema::{LEAVE_REASONS, col};
use crate::stages::features::f;

/// Rows per block of the point simulation (bounds memory).
pub(crate) const BLOCK: usize = 16_384;

/// The models the simulation needs.
pub struct Models<'a> {
    /// Return model.
    pub ret: &'a ReturnModel,
    /// Second-lifetime hazard with its margin model.
    pub second: &'a SecondLifetimeModel,
}

/// The leave reason of each row as an index into [`LEAVE_REASONS`]
/// (unknown and unseen values: `unknown`).
pub fn reasons(df: &DataFrame) -> Result<Vec<usize>> {
    Ok(df
        .column(f::LEAVE_REASON)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("simulate: leave_reason"))?
        .iter()
        .map(|v| {
            v.and_then(|r| LEAVE_REASONS.iter().position(|x| *x == r))
                .unwrap_or(LEAVE_REASONS.len() - 1)
        })
        .collect())
}

/// The simulator of the rows of `df` under every arm (control first).
pub fn simulator(df: &DataFrame, m: &Models<'_>, economics: &Economics) -> Result<Simulator> {
    let margin = &m.second.margin;
    let reason = reasons(df)?;
    let names: Vec<Option<&str>> = Arm::ALL.iter().map(|a| Some(a.name())).collect();
    let mut ret = m.ret.linear_parts_arms(df, &names)?.into_iter();
    let mut arms = Vec::with_capacity(Arm::ALL.len());
    for arm in Arm::ALL {
        let with_arm = df
            .clone()
            .lazy()
            .with_column(lit(arm.name()).alias(WON_BACK_BY))
            .collect()
            .map_err(Error::polars("simulate: arm column"))?;
        arms.push(ArmInputs {
            contact: arm != Arm::Control,
            ret: ret.next().expect("a linear part per arm"),
            hazard: m.second.hazard_band_parts(df, Some(arm.name()))?,
            margin: margin.linear_part(&with_arm)?,
            package: reason.iter().map(|r| economics.package(arm, *r)).collect(),
        });
    }
    let bands = m.second.layout.bands.clone();
    Simulator::new(
        arms,
        if bands.is_empty() { vec![1] } else { bands },
        economics,
    )
    .map_err(|e| Error::Fit {
        model: "simulation".into(),
        message: e.to_string(),
    })
}

/// Point outcomes `[arm][row]` of every row of `df`, block by block.
pub fn point(df: &DataFrame, m: &Models<'_>, economics: &Economics) -> Result<Vec<Vec<Outcome>>> {
    let n = df.height();
    let mut out: Vec<Vec<Outcome>> = vec![Vec::with_capacity(n); Arm::ALL.len()];
    for start in (0..n).step_by(BLOCK) {
        let part = df.slice(start as i64, BLOCK.min(n - start));
        let sim = simulator(&part, m, economics)?;
        for (acc, arm) in out.iter_mut().zip(sim.point()) {
            acc.extend(arm);
        }
    }
    Ok(out)
}

/// The arm index in [`Arm::ALL`] of each row's `arm` column (unknown: `None`).
pub fn arm_indices(df: &DataFrame, column: &str) -> Result<Vec<Option<usize>>> {
    Ok(df
        .column(column)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars(format!("simulate: {column}")))?
        .iter()
        .map(|v| v.and_then(|a| Arm::ALL.iter().position(|x| x.name() == a)))
        .collect())
}

/// The `subscriber_id` column as strings.
pub fn ids(df: &DataFrame) -> Result<Vec<String>> {
    Ok(df
        .column(col::SUBSCRIBER_ID)
        .and_then(|c| c.str().cloned())
        .map_err(Error::polars("simulate: subscriber_id"))?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}
