//! `winback simulate`: the I/O edge of the offer simulation
//! ([`crate::stages::simulate`]). Reads the validated tables, a model
//! version and the features stage's offers (the randomised history),
//! builds the features of the subscribers lapsed at the as-of date, runs
//! the stage, and writes `<out>/simulate/` all or nothing: `arm_summary`,
//! `target_list` and `policy_evaluation` (Parquet at full precision, CSV
//! rounded to cents and four-decimal probabilities), `target_list.xlsx`
//! and `summary.json`; prints the arm table ranked by profit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use tracing::info;

use crate::artifact::{ModelKind, ModelSet};
use crate::catalog::{self, FeatureSet, Output};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::Table;
use crate::stages::features::{Current, Inputs};
use crate::stages::simulate::{self as stage, Models, SimulateInputs, SimulateSummary, workbook};

use super::common::{catalog as run_catalog, money, stdout};
use super::score::{Prepared, current_features};

/// The return and second-lifetime models of a version, which the
/// simulation needs.
pub(crate) fn models<'a>(set: &'a ModelSet, dir: &Path) -> Result<Models<'a>> {
    let missing = |kind: ModelKind| Error::Model {
        path: dir.to_path_buf(),
        message: format!(
            "the model version has no {kind} model, which the simulation needs (see the train summary for why it was skipped)"
        ),
    };
    Ok(Models {
        ret: set
            .return_model
            .as_ref()
            .ok_or_else(|| missing(ModelKind::Return))?,
        second: set
            .second_lifetime
            .as_ref()
            .ok_or_else(|| missing(ModelKind::SecondLifetime))?,
    })
}

/// `winback simulate`, the features as of the date from `prepared` when
/// given ([`super::score::validate_for_scoring`]).
pub fn simulate(
    settings: &Settings,
    tables: BTreeMap<Table, LazyFrame>,
    prepared: Option<Prepared>,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<SimulateSummary> {
    let inputs = Inputs::new(tables);
    let current = current_features(settings, &inputs, prepared)?;
    simulate_current(
        settings,
        &inputs,
        &current,
        model,
        &run_catalog(settings),
        out,
    )
}

/// `winback simulate` on the features as of the date, already built
/// (`run` builds them once for `score` and `simulate`).
pub(crate) fn simulate_current(
    settings: &Settings,
    inputs: &Inputs,
    current: &Current,
    model: Option<&Path>,
    history: &catalog::Catalog,
    out: &mut dyn Write,
) -> Result<SimulateSummary> {
    let _progress = crate::progress::stage("simulate");
    let started = Instant::now();
    let cat = run_catalog(settings);
    let dir = cat.model_version(model)?;
    let loaded = catalog::load_models(&dir)?;
    let models = models(&loaded, &dir)?;
    models.ret.check_manifest(
        &current.manifest,
        &catalog::model_file(&dir, ModelKind::Return),
    )?;
    models.second.check_manifest(
        &current.manifest,
        &catalog::model_file(&dir, ModelKind::SecondLifetime),
    )?;
    let history = history.read_features_if_present(FeatureSet::Offers)?;
    let mut result = stage::run(
        SimulateInputs {
            tables: inputs,
            current,
            models,
            model_version: dir,
            history: history.as_ref(),
        },
        &settings.simulate,
        &settings.economics,
    )?;
    let staged = cat.stage(Output::Simulate)?;
    // The workbook (a zip of the target list's sheets, compressed) on a
    // thread of its own beside the tables.
    let targets = result.target_list.clone();
    std::thread::scope(|scope| -> Result<()> {
        let staged = &staged;
        let book = scope.spawn(move || {
            staged.write_bytes(
                "target_list.xlsx",
                &workbook::target_list(&targets, current.as_of)?,
            )
        });
        let tables = (|| -> Result<()> {
            for (name, frame) in [
                ("arm_summary", &mut result.arm_summary),
                ("target_list", &mut result.target_list),
                ("policy_evaluation", &mut result.policy_evaluation),
            ] {
                staged.write_parquet(name, frame)?;
                staged.write_csv(name, &mut workbook::for_people(frame)?)?;
            }
            Ok(())
        })();
        let book = book
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        tables.and(book)
    })?;
    staged.write_json("summary", &result.summary)?;
    let written = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "simulate done");
    out.write_all(render(&result.summary, &result.arm_summary, settings).as_bytes())
        .and_then(|_| writeln!(out, "  written to {}", written.display()))
        .map_err(stdout)?;
    Ok(result.summary)
}

/// The one-screen report of a simulation.
pub fn render(s: &SimulateSummary, arms: &DataFrame, settings: &Settings) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let pct = settings.simulate.interval * 100.0;
    let _ = writeln!(
        o,
        "simulated as of {} (campaign {}) with {}",
        s.as_of,
        s.campaign,
        s.model.display()
    );
    let _ = writeln!(
        o,
        "  lapsed {}, eligible {}{}",
        s.lapsed,
        s.eligible,
        if s.excluded.is_empty() {
            String::new()
        } else {
            format!(
                " (excluded: {})",
                s.excluded
                    .iter()
                    .map(|(r, n)| format!("{n} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        o,
        "\n  arms ranked by profit over the {} eligible ({pct:.0}% intervals):",
        s.eligible
    );
    let _ = writeln!(
        o,
        "  {:<9} {:>6} {:>9} {:>10} {:>12} {:>25} {:>12} {:>9} {:>9} {:>10}",
        "arm",
        "rank",
        "recapture",
        "rate rank",
        "profit",
        "interval",
        "incremental",
        "gross roi",
        "incr roi",
        "cost/reacq"
    );
    let str_col = |name: &str| -> Vec<String> {
        arms.column(name)
            .ok()
            .and_then(|c| c.str().ok().cloned())
            .map(|c| c.iter().map(|v| v.unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let f_col = |name: &str| -> Vec<Option<f64>> {
        arms.column(name)
            .ok()
            .and_then(|c| c.cast(&DataType::Float64).ok())
            .and_then(|c| c.f64().ok().cloned())
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let u_col = |name: &str| -> Vec<Option<u32>> {
        arms.column(name)
            .ok()
            .and_then(|c| c.u32().ok().cloned())
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let incr_roi = f_col("incremental_roi");
    let (names, rate, profit, lo, hi, inc, roi, cpr) = (
        str_col("arm"),
        f_col("recapture_rate"),
        f_col("profit"),
        f_col("profit_lo"),
        f_col("profit_hi"),
        f_col("incremental_profit"),
        f_col("gross_roi"),
        f_col("cost_per_reacquired"),
    );
    let (prank, rrank) = (u_col("profit_rank"), u_col("recapture_rank"));
    let show_rank = |r: Option<u32>| r.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
    for i in 0..names.len() {
        let _ = writeln!(
            o,
            "  {:<9} {:>6} {:>8.1}% {:>10} {:>12} {:>25} {:>12} {:>9} {:>9} {:>10}",
            names[i],
            show_rank(prank[i]),
            rate[i].unwrap_or(f64::NAN) * 100.0,
            show_rank(rrank[i]),
            money(profit[i].unwrap_or(f64::NAN)),
            format!(
                "{} to {}",
                money(lo[i].unwrap_or(f64::NAN)),
                money(hi[i].unwrap_or(f64::NAN))
            ),
            money(inc[i].unwrap_or(f64::NAN)),
            roi[i]
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            incr_roi
                .get(i)
                .copied()
                .flatten()
                .map(|r| format!("{:.0}%", r * 100.0))
                .unwrap_or_else(|| "-".into()),
            cpr[i]
                .map(|c| format!("{c:.0}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    let _ = writeln!(
        o,
        "  (profit: expected second-lifetime margin less offer and contact costs, discounted; \
         acquisition cost for comparison {:.0})",
        settings.economics.acquisition_cost
    );
    let _ = writeln!(o, "  (intervals cover {})", s.intervals.covers);
    let a = &s.allocation;
    let _ = writeln!(
        o,
        "\n  policy: {} of {} eligible have a profitable arm; {} selected ({} to contact, {} held out)",
        s.profitable, s.eligible, s.selected, s.contacted, s.holdout
    );
    let _ = writeln!(
        o,
        "  incremental profit {} over no offer (upper bound {}, gap {:.2}%{}); {} contacts, expected spend {}",
        money(a.incremental_profit),
        money(a.upper_bound),
        100.0 * a.gap / a.upper_bound.abs().max(1e-9),
        if a.exact { ", optimal" } else { "" },
        a.contacts,
        money(a.spend)
    );
    if let Some(p) = s.intervals.policies.first() {
        let _ = writeln!(
            o,
            "  recommended policy's profit {} ({} to {})",
            money(p.estimate),
            money(p.lo),
            money(p.hi)
        );
    }
    let _ = writeln!(o, "  {}", s.targeting.note);
    if !s.off_policy.is_empty() {
        let _ = writeln!(
            o,
            "\n  off-policy evaluation on {} past randomised offers no model used here was fitted on\n  (the fits made before the holdout cuts; profit per offer, {pct:.0}% intervals):",
            s.off_policy[0].offers
        );
        if s.off_policy[0].set_aside > 0 {
            let _ = writeln!(
                o,
                "  ({} held-out offers set aside: no usable propensity)",
                s.off_policy[0].set_aside
            );
        }
        let _ = writeln!(
            o,
            "  {:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>20}",
            "policy", "matched", "model", "IPS", "SNIPS", "DR", ""
        );
        for p in &s.off_policy {
            let _ = writeln!(
                o,
                "  {:<22} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>20}",
                p.policy,
                p.matched,
                p.model,
                p.ips.estimate,
                p.snips.estimate,
                p.dr.estimate,
                format!("({:.1} to {:.1})", p.dr.lo, p.dr.hi)
            );
        }
    }
    o
}
