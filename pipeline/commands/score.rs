//! `winback score`: a model version applied to the subscribers active and
//! lapsed at the as-of date; `<out>/score/` written all or nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use polars::prelude::LazyFrame;
use serde::Serialize;
use tracing::info;

use crate::catalog::{self, Output};
use crate::config::Settings;
use crate::error::Result;
use crate::schema::Table;
use crate::stages::features::{self as feature_stage, Current, CurrentEvents, Inputs, TappedBills};
use crate::stages::score as stage;

use super::common::{catalog as run_catalog, dates, stdout};

/// What `score` wrote.
#[derive(Debug, Serialize)]
pub struct ScoreSummary {
    /// As-of date.
    pub as_of: String,
    /// Model version used.
    pub model: PathBuf,
    /// Rows per output.
    pub rows: Vec<(String, usize)>,
    /// Values null, not seen in training or too rare there, per model and
    /// feature (scored as `other`).
    pub unseen_categories: Vec<(String, usize)>,
}

/// `winback score`: applies a model version to the subscribers active and
/// lapsed at the as-of date.
pub fn score(
    settings: &Settings,
    tables: BTreeMap<Table, LazyFrame>,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    score_prepared(settings, tables, None, model, out)
}

/// [`score`], the events' bills summed already by validation's pass over
/// them when `prepared` ([`validate_for_scoring`]).
pub(crate) fn score_prepared(
    settings: &Settings,
    tables: BTreeMap<Table, LazyFrame>,
    prepared: Option<Prepared>,
    model: Option<&Path>,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    let _progress = crate::progress::stage("score");
    let started = Instant::now();
    let inputs = Inputs::new(tables);
    let current = current_features(settings, &inputs, prepared)?;
    score_current(settings, &current, model, started, out)
}

/// Scoring's events as of the date, found while validation runs, before
/// it reads the bills, and their bills' sums from that read
/// ([`validate_for_scoring`]).
pub struct Prepared {
    events: CurrentEvents,
    bills: TappedBills,
    /// The dates the events were found as of: those of the validated
    /// tables, since the tap saw every bill and no other.
    pub dates: crate::stages::features::Dates,
}

/// `winback validate` for scoring: once every table but billing is
/// checked, the events as of the date are found from them, and
/// validation's one pass over the bills adds each bill to its
/// subscriber's events, so that scoring need not read billing again
/// (at 10M subscribers, 314M bills). The sums are kept when that pass saw
/// every accepted bill ([`crate::stages::validate::Validated::bills_tapped`]:
/// no bill rejected); otherwise scoring reads the accepted bills itself.
/// Where the events cannot be found before the bills (the tables break a
/// rule in strict mode, or the events fail), nothing is prepared and
/// scoring finds them after validation, as without this.
pub(crate) fn validate_for_scoring(
    settings: &Settings,
    out: &mut dyn Write,
) -> Result<(crate::stages::validate::Validated, Option<Prepared>)> {
    let mut prepared = None;
    let validated = super::validate::validate_tapped(
        settings,
        out,
        &mut |tables, billing, index| {
            let mut tables = tables.clone();
            tables.insert(Table::Billing, billing.clone());
            let inputs = Inputs::new(tables);
            let found = dates(&inputs, settings).and_then(|d| {
                let events = feature_stage::current_events(&inputs, &settings.features, d.clone())?;
                let (tap, bills) = events.tap(&settings.features, index)?;
                Ok((
                    tap,
                    Prepared {
                        events,
                        bills,
                        dates: d,
                    },
                ))
            });
            match found {
                Ok((tap, p)) => {
                    prepared = Some(p);
                    Ok(Some(tap))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "scoring's events not found before the bills; found after validation");
                    Ok(None)
                }
            }
        },
    )?;
    let prepared = prepared.filter(|_| validated.bills_tapped);
    Ok((validated, prepared))
}

/// The features as of the configured date of the subscribers active and
/// lapsed then (`run` takes them from the features stage's rows,
/// [`crate::stages::features::Features::current`]); from `prepared` when
/// given (its events and bills' sums, found during validation; `inputs`
/// must be the tables that validation accepted).
pub(crate) fn current_features(
    settings: &Settings,
    inputs: &Inputs,
    prepared: Option<Prepared>,
) -> Result<Current> {
    let started = Instant::now();
    let current = match prepared {
        Some(Prepared { events, bills, .. }) => {
            tracing::debug!("features for scoring: bills summed by validation's pass");
            events.finish(inputs, &settings.features, Some(bills))?
        }
        None => feature_stage::current(inputs, &settings.features, dates(inputs, settings)?)?,
    };
    info!(
        as_of = %current.as_of,
        active = current.active.height(),
        lapsed = current.lapsed.height(),
        seconds = started.elapsed().as_secs_f64(),
        "features for scoring"
    );
    Ok(current)
}

/// `winback score` on features already built (timed from `started`).
pub(crate) fn score_current(
    settings: &Settings,
    current: &Current,
    model: Option<&Path>,
    started: Instant,
    out: &mut dyn Write,
) -> Result<ScoreSummary> {
    let cat = run_catalog(settings);
    let dir = cat.model_version(model)?;
    let models = {
        let _span = tracing::debug_span!("load models").entered();
        catalog::load_models(&dir)?
    };
    for m in models.models() {
        m.check_manifest(&current.manifest, &catalog::model_file(&dir, m.model))?;
    }
    let scores = {
        let _span = tracing::debug_span!("apply models").entered();
        stage::score(current, &models)?
    };
    let _span = tracing::debug_span!("write scores").entered();
    let staged = cat.stage(Output::Score)?;
    let mut rows = Vec::new();
    for (name, df) in [
        ("churn_scores", scores.churn),
        ("return_scores", scores.returns),
    ] {
        if let Some(mut df) = df {
            rows.push((format!("{name}.parquet"), df.height()));
            staged.write_parquet(name, &mut df)?;
        }
    }
    let summary = ScoreSummary {
        as_of: current.as_of.to_string(),
        model: dir,
        rows,
        unseen_categories: scores.unseen,
    };
    staged.write_json("summary", &summary)?;
    let written = staged.commit()?;
    info!(seconds = started.elapsed().as_secs_f64(), "score done");
    let w = stdout;
    writeln!(
        out,
        "scored as of {} with {}",
        summary.as_of,
        summary.model.display()
    )
    .map_err(w)?;
    for (name, n) in &summary.rows {
        writeln!(out, "  {name:<24} {n:>12} rows").map_err(w)?;
    }
    for (name, n) in &summary.unseen_categories {
        writeln!(
            out,
            "  {n} values of {name} null, not seen in training or too rare there: scored as `other`"
        )
        .map_err(w)?;
    }
    writeln!(out, "  written to {}", written.display()).map_err(w)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrono::NaiveDate;
    use polars::prelude::*;

    use super::*;
    use crate::cli::GenerateArgs;
    use crate::config::Overrides;
    use crate::generate::GenerateOptions;
    use crate::stages::validate::Mode;

    /// A generated history of `n` subscribers in `dir/data`.
    fn generated(dir: &Path, n: u64, seed: u64) -> PathBuf {
        let data = dir.join("data");
        let args = GenerateArgs {
            subscribers: n,
            seed,
            out: data.clone(),
            start: GenerateOptions::default().start,
            months: GenerateOptions::default().months,
            chunk_size: GenerateOptions::default().chunk_size,
            config: None,
            known_on: None,
        };
        super::super::generate::generate(&args, &mut std::io::sink()).unwrap();
        data
    }

    fn settings(data: &Path, out: &Path, mode: Mode, as_of: Option<NaiveDate>) -> Settings {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml");
        super::super::common::settings(
            Some(&config),
            Overrides {
                data: Some(data.to_path_buf()),
                out: Some(out.to_path_buf()),
                mode: Some(mode),
                as_of,
                data_end: None,
                out_optional: false,
                needs_data: true,
            },
        )
        .unwrap()
    }

    /// The features for scoring from validation's tap, and from a pass
    /// over the accepted bills of their own; `None` for the first when
    /// nothing was prepared.
    fn both_ways(settings: &Settings) -> (Option<Current>, Current) {
        let (validated, prepared) = validate_for_scoring(settings, &mut std::io::sink()).unwrap();
        let inputs = Inputs::new(validated.tables.clone());
        let tapped = prepared.map(|p| current_features(settings, &inputs, Some(p)).unwrap());
        let plain = current_features(settings, &inputs, None).unwrap();
        (tapped, plain)
    }

    fn assert_same(a: &Current, b: &Current, what: &str) {
        assert_eq!(a.as_of, b.as_of, "{what}");
        assert_eq!(a.data_end, b.data_end, "{what}");
        assert_eq!(a.manifest, b.manifest, "{what}");
        for (x, y, set) in [
            (&a.active, &b.active, "active"),
            (&a.lapsed, &b.lapsed, "lapsed"),
        ] {
            assert!(x.height() > 0, "{what}: no {set} rows");
            assert_eq!(x.schema(), y.schema(), "{what}: {set}");
            assert!(x.equals_missing(y), "{what}: {set} rows differ");
        }
    }

    /// Scoring's features from the sums validation's pass over the bills
    /// adds up are the features from a pass of their own, whatever the
    /// date, and when the months' bits take several passes (the tap sees
    /// the first only).
    #[test]
    fn bills_summed_by_validation_give_scorings_features() {
        let dir = tempfile::tempdir().unwrap();
        let data = generated(dir.path(), 1_500, 7);
        let out = dir.path().join("out");
        let dates = [
            None,
            NaiveDate::from_ymd_opt(2023, 3, 14),
            NaiveDate::from_ymd_opt(2025, 6, 30),
        ];
        for as_of in dates {
            for budget in [1 << 30, 64] {
                let mut s = settings(&data, &out, Mode::Strict, as_of);
                s.validate.duplicate_check_bytes = budget;
                let (tapped, plain) = both_ways(&s);
                let what = format!("as of {as_of:?}, budget {budget}");
                let tapped = tapped.unwrap_or_else(|| panic!("{what}: nothing prepared"));
                assert_same(&tapped, &plain, &what);
            }
        }
    }

    /// Rows rejected from the tables the events come from (quarantine
    /// mode) leave the bills tapped: the events are found in the accepted
    /// rows, as after validation, and give the same features. A rejected
    /// bill leaves the tap's sums unused (they counted it): scoring then
    /// sums the accepted bills itself.
    #[test]
    fn rejected_rows_and_the_taps_sums() {
        let dir = tempfile::tempdir().unwrap();
        let data = generated(dir.path(), 1_200, 11);
        let out = dir.path().join("out");
        let s = settings(&data, &out, Mode::Quarantine, None);
        let read = |name: &str| {
            ParquetReader::new(std::fs::File::open(data.join(name)).unwrap())
                .finish()
                .unwrap()
        };
        let write = |name: &str, df: &mut DataFrame| {
            ParquetWriter::new(std::fs::File::create(data.join(name)).unwrap())
                .finish(df)
                .unwrap();
        };
        let rejected = |validated: &crate::stages::validate::Validated, table: &str| {
            let r = validated.reports.iter().find(|r| r.table == table).unwrap();
            r.rows_rejected
        };
        // The first churn event's leave reason unknown: the row rejected,
        // its subscriber not lapsed then.
        let mut churns = read("churn_events.parquet");
        let reasons: StringChunked = churns
            .column("leave_reason")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| if i == 0 { Some("bogus") } else { r })
            .collect();
        churns
            .with_column(reasons.with_name("leave_reason".into()).into_column())
            .unwrap();
        write("churn_events.parquet", &mut churns);
        let (validated, _) = validate_for_scoring(&s, &mut std::io::sink()).unwrap();
        assert_eq!(rejected(&validated, "churn_events"), 1);
        assert!(validated.bills_tapped);
        let (tapped, plain) = both_ways(&s);
        let tapped = tapped.expect("a churn event rejected: the bills tapped");
        assert_same(&tapped, &plain, "a churn event rejected");
        // A bill of the first subscriber's repeated with a higher revenue:
        // a duplicate month, both rows rejected.
        let mut bills = read("billing.parquet");
        let mut extra = bills.head(Some(1));
        let revenue = extra
            .column("revenue")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        extra
            .with_column(Column::new("revenue".into(), [revenue + 100.0]))
            .unwrap();
        bills.vstack_mut(&extra).unwrap();
        write("billing.parquet", &mut bills);
        let (validated, prepared) = validate_for_scoring(&s, &mut std::io::sink()).unwrap();
        assert_eq!(rejected(&validated, "billing"), 2);
        assert!(!validated.bills_tapped);
        assert!(prepared.is_none(), "a rejected bill: the tap's sums unused");
    }
}
