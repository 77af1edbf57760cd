//! `winback bench`: times one task at a chosen scale on the features
//! stage's output and the newest model version (figures for the README's
//! performance table).

use std::io::Write;
use std::time::Instant;

use polars::prelude::*;

use crate::artifact::ModelKind;
use crate::catalog::{self, FeatureSet};
use crate::cli::BenchTask;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::schema::ARMS;
use crate::stages::features::f;
use crate::stages::simulate::{self as sim, arms, intervals, outputs, policy};
use crate::stages::train::{self as train_stage, Stamp};

use super::common::{catalog as run_catalog, money, stdout};
use super::simulate;

/// `rows` rows made of `df`'s rows repeated in order.
fn repeat_to(df: &DataFrame, rows: usize) -> Result<DataFrame> {
    if df.height() == 0 {
        return Err(Error::Setting {
            key: "bench".into(),
            message: "no input rows to repeat".into(),
        });
    }
    let mut out = df.clone();
    while out.height() < rows {
        let take = (rows - out.height()).min(out.height());
        out.vstack_mut_owned(out.head(Some(take)))
            .map_err(Error::polars("bench: repeat rows"))?;
    }
    out.rechunk_mut_par();
    Ok(out.head(Some(rows)))
}

/// `winback bench`: times one task at `rows` rows and prints the figures.
pub fn bench(settings: &Settings, task: BenchTask, rows: usize, out: &mut dyn Write) -> Result<()> {
    let cat = run_catalog(settings);
    let w = stdout;
    match task {
        BenchTask::Simulate => {
            bench_simulate(settings, rows, out)?;
        }
        BenchTask::TrainReturn => {
            let manifest = cat.read_manifest()?;
            let offers = cat.read_features(FeatureSet::Offers)?;
            let offers = repeat_to(&offers, rows)?;
            let t = Instant::now();
            let a = train_stage::fit_return(
                &offers,
                &manifest,
                settings.features.response_window_days,
                &settings.train,
                &Stamp {
                    config_hash: settings.config_hash.clone(),
                    trained_at: String::new(),
                },
            )?;
            let secs = t.elapsed().as_secs_f64();
            writeln!(
                out,
                "train-return: {} offers ({} fitted, {} held out), {} design columns: {secs:.1} s; kept {}",
                offers.height(),
                a.provenance.training_rows,
                a.holdout.rows,
                a.layout.names().len(),
                a.chosen
            )
            .map_err(w)?;
        }
        BenchTask::Score => {
            let models = catalog::load_models(&cat.model_version(None)?)?;
            let active = cat.read_features(FeatureSet::Active)?;
            let mut active = repeat_to(&active, rows)?;
            // The return model reads the leave reason and the days since
            // defection: give the repeated rows some.
            active
                .with_column(Column::new(
                    f::LEAVE_REASON.into(),
                    (0..rows)
                        .map(|i| crate::schema::LEAVE_REASONS[i % 5])
                        .collect::<Vec<_>>(),
                ))
                .map_err(Error::polars("bench"))?;
            active
                .with_column(Column::new(
                    f::DAYS_SINCE_DEFECTION.into(),
                    (0..rows).map(|i| (i % 120) as i32).collect::<Vec<_>>(),
                ))
                .map_err(Error::polars("bench"))?;
            for m in models.models() {
                if m.model == ModelKind::SecondLifetime {
                    continue;
                }
                let t = Instant::now();
                let arms: Vec<Option<&str>> = if m.model == ModelKind::Return {
                    ARMS.iter().map(|a| Some(*a)).collect()
                } else {
                    vec![None]
                };
                let n: usize = m.predict_arms(&active, &arms)?.0.iter().map(Vec::len).sum();
                let secs = t.elapsed().as_secs_f64();
                writeln!(
                    out,
                    "score {} ({}): {} rows x {} arm(s) = {n} predictions: {secs:.1} s ({:.0} rows/s)",
                    m.model,
                    m.chosen,
                    rows,
                    arms.len(),
                    n as f64 / secs
                )
                .map_err(w)?;
            }
        }
    }
    Ok(())
}

/// `winback bench --task simulate`: times each step of the simulation on
/// the features' lapsed subscribers repeated to `rows` (days since the
/// defection spread over the eligible range), with the newest models.
fn bench_simulate(settings: &Settings, rows: usize, out: &mut dyn Write) -> Result<()> {
    let s = &settings.simulate;
    let economics = &settings.economics;
    let cat = run_catalog(settings);
    let dir = cat.model_version(None)?;
    let loaded = catalog::load_models(&dir)?;
    let models = simulate::models(&loaded, &dir)?;
    let lapsed = cat.read_features(FeatureSet::Lapsed)?;
    let mut df = repeat_to(&lapsed, rows)?;
    let span = (s.max_days_since_defection - s.min_days_since_defection + 1) as usize;
    df.with_column(Column::new(
        f::DAYS_SINCE_DEFECTION.into(),
        (0..rows)
            .map(|i| (s.min_days_since_defection as usize + i % span) as i32)
            .collect::<Vec<_>>(),
    ))
    .map_err(Error::polars("bench"))?;
    let w = stdout;
    let total = Instant::now();
    let step = |name: &str, t: Instant, out: &mut dyn Write| -> Result<()> {
        writeln!(out, "  {name:<34} {:>8.1} s", t.elapsed().as_secs_f64()).map_err(w)
    };
    writeln!(out, "simulate: {rows} lapsed subscribers x 5 arms").map_err(w)?;
    let t = Instant::now();
    let point = arms::point(&df, &models, economics)?;
    step("point estimates", t, out)?;
    let allowed: Vec<usize> = s.arms.iter().map(|a| a.index()).collect();
    let t = Instant::now();
    let default = policy::default_arm(&point, &allowed);
    let best = policy::guarded_choice(&df, &point, &allowed, default, &models, economics, s)?;
    step(
        &format!("guarded policy ({} replicates)", s.decision_replicates),
        t,
        out,
    )?;
    let t = Instant::now();
    let unlimited = policy::allocate(&point, &allowed, &best, s, economics);
    step("allocation, no limits", t, out)?;
    let limited_settings = sim::SimulateSettings {
        max_contacts: Some((rows / 2) as u64),
        max_spend: Some(unlimited.used.spend / 3.0),
        arm_capacity: [("upgrade".to_string(), (rows / 4) as u64)].into(),
        ..s.clone()
    };
    let t = Instant::now();
    let limited = policy::allocate(&point, &allowed, &best, &limited_settings, economics);
    step("allocation, three limits", t, out)?;
    writeln!(
        out,
        "    (contacts {}, spend {}, gap {:.3}% of the bound)",
        limited.used.contacts,
        money(limited.used.spend),
        100.0 * limited.gap() / limited.bound.abs().max(1e-9)
    )
    .map_err(w)?;
    let t = Instant::now();
    let iv = intervals::intervals(
        &df,
        &point,
        std::slice::from_ref(&best),
        &models,
        economics,
        s,
    )?;
    step(
        &format!(
            "intervals ({} replicates x {} rows)",
            iv.replicates, iv.sample_rows
        ),
        t,
        out,
    )?;
    let t = Instant::now();
    let shown: Vec<usize> = best.iter().map(|b| b.unwrap_or(allowed[0])).collect();
    outputs::reason_codes(&df, &shown, models.ret)?;
    step("reason codes", t, out)?;
    step("total", total, out)?;
    Ok(())
}
