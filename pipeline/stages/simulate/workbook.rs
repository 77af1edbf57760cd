//! The target list as an Excel workbook for marketing teams: a sheet per
//! action (contact first), frozen header with a filter, money in dollars
//! and cents, probabilities as percentages with two decimals (four as
//! fractions), and a note on every column header saying what it holds.
//! Also the CSV files' rounding ([`for_people`]).

use polars::prelude::*;
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Note, Workbook, Worksheet, XlsxError};

use crate::error::{Error, Result};

/// A frame rounded for the files people open (CSV): probabilities and
/// rates (`p_*`, `*rate*`, `*share*`) to four decimals, every other float
/// (money, counts, ratios) to cents. Parquet keeps full precision.
pub fn for_people(df: &DataFrame) -> Result<DataFrame> {
    let mut columns = Vec::with_capacity(df.width());
    for c in df.columns() {
        if !c.dtype().is_float() {
            columns.push(c.clone());
            continue;
        }
        let name = c.name().as_str();
        let decimals = if name.starts_with("p_") || name.contains("rate") || name.contains("share")
        {
            4
        } else {
            2
        };
        let s = c
            .as_materialized_series()
            .round(decimals, RoundMode::HalfAwayFromZero)
            .map_err(Error::polars(format!("round {name}")))?;
        columns.push(s.into());
    }
    DataFrame::new(df.height(), columns).map_err(Error::polars("round for CSV"))
}

/// The actions, in sheet order.
const ACTIONS: [&str; 4] = ["contact", "holdout", "over_budget", "no_offer"];

/// Most data rows on one sheet (Excel's limit is 1,048,576 rows with the
/// header); longer actions continue on `<action> (2)`.
const MAX_ROWS: usize = 1_048_575;

/// How a column is shown.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Money,
    Probability,
    Whole,
    Months,
    Text,
}

fn kind(name: &str, dtype: &DataType) -> Kind {
    if name.starts_with("p_return") {
        Kind::Probability
    } else if name.starts_with("expected_months_") {
        Kind::Months
    } else if matches!(name, "rank" | "days_since_defection") || dtype.is_integer() {
        Kind::Whole
    } else if dtype.is_float() {
        Kind::Money
    } else {
        Kind::Text
    }
}

/// What a column holds, for its header note.
fn note(name: &str) -> String {
    let arm = |prefix: &str| name.strip_prefix(prefix).map(str::to_string);
    if let Some(a) = arm("p_return_") {
        return format!(
            "Chance that the subscriber comes back within the response window if sent the {a} offer (control: no offer)."
        );
    }
    if let Some(a) = arm("second_lifetime_net_value_") {
        return format!(
            "Expected discounted margin of the second lifetime if the subscriber comes back with the {a} offer, less that offer's cost (USD)."
        );
    }
    if let Some(a) = arm("expected_months_") {
        return format!(
            "Expected months billed in the second lifetime if the subscriber comes back with the {a} offer, within the value's horizon."
        );
    }
    if let Some(a) = arm("monthly_margin_") {
        return format!(
            "Expected margin per billed month of the second lifetime with the {a} offer, before the offer's cost (USD)."
        );
    }
    if let Some(a) = arm("expected_profit_") {
        return format!(
            "Chance of return times the net value, less the contact cost, with the {a} offer (USD)."
        );
    }
    if let Some(a) = arm("incremental_profit_") {
        return format!(
            "Expected profit with the {a} offer minus the expected profit of sending no offer (USD)."
        );
    }
    match name {
        "subscriber_id" => "The subscriber's id in your data.".into(),
        "rank" => "Order in which to contact: 1 adds the most expected profit.".into(),
        "action" => "contact: send the recommended offer; holdout: selected but withheld at random to measure the campaign; over_budget: pays but left out by the budget; no_offer: no offer is expected to pay.".into(),
        "recommended_arm" => "The offer to send: discount, upgrade, both, or tailored (by leave reason).".into(),
        "expected_incremental_profit" => "Expected profit of the recommended offer beyond sending no offer (USD).".into(),
        "value_segment" => "gold: high value before leaving and high potential; silver: value only; copper: potential only; iron: neither.".into(),
        "leave_reason" => "Reason the subscriber gave for leaving.".into(),
        "days_since_defection" => "Days between leaving and the campaign date.".into(),
        "churned_at" => "Date the subscriber left.".into(),
        n if n.starts_with("reason_") => "A reason for the return model's view: a feature and its contribution to the log-odds of returning (positive raises the chance).".into(),
        _ => String::new(),
    }
}

fn xlsx(e: XlsxError) -> Error {
    Error::Render {
        what: "target_list.xlsx".into(),
        message: e.to_string(),
    }
}

/// The workbook's bytes. Its creation time is the as-of date, so that
/// the same list gives the same bytes.
pub fn target_list(df: &DataFrame, as_of: chrono::NaiveDate) -> Result<Vec<u8>> {
    use chrono::Datelike;
    let mut wb = Workbook::new();
    // Deflate at level 3, as Excel 365 saves: at 1M subscribers most of
    // the simulate stage's last two seconds went to compressing the sheets'
    // XML at the zip crate's default level 6; at level 3 that step took
    // 1.59 s against 1.90 s, for a file 9% larger (README, Performance).
    wb.set_zip_compression_level(3);
    let created =
        ExcelDateTime::from_ymd(as_of.year() as u16, as_of.month() as u8, as_of.day() as u8)
            .map_err(xlsx)?;
    wb.set_properties(
        &DocProperties::new()
            .set_creation_datetime(&created)
            .set_title("Win-back target list")
            .set_author("winback"),
    );
    let header = Format::new()
        .set_bold()
        .set_background_color("#DCE6F0")
        .set_text_wrap();
    let money = Format::new().set_num_format("$#,##0.00;[Red]-$#,##0.00");
    let probability = Format::new().set_num_format("0.00%");
    let whole = Format::new().set_num_format("0");
    let months = Format::new().set_num_format("0.0");
    let action = df
        .column("action")
        .and_then(|c| c.cast(&DataType::String))
        .map_err(Error::polars("workbook: action"))?;
    let action: Vec<Option<String>> = action
        .as_materialized_series()
        .str()
        .map_err(Error::polars("workbook: action"))?
        .iter()
        .map(|s| s.map(str::to_string))
        .collect();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let kinds: Vec<Kind> = df
        .columns()
        .iter()
        .map(|c| kind(c.name(), c.dtype()))
        .collect();
    // Every column as numbers or text, once.
    let mut numbers: Vec<Option<Vec<Option<f64>>>> = Vec::new();
    let mut texts: Vec<Option<Vec<Option<String>>>> = Vec::new();
    for (c, k) in df.columns().iter().zip(&kinds) {
        if *k == Kind::Text {
            let s = c
                .cast(&DataType::String)
                .map_err(Error::polars(format!("workbook: {}", c.name())))?;
            let v = s
                .as_materialized_series()
                .str()
                .map_err(Error::polars(format!("workbook: {}", c.name())))?
                .iter()
                .map(|s| s.map(str::to_string))
                .collect();
            numbers.push(None);
            texts.push(Some(v));
        } else {
            let s = c
                .cast(&DataType::Float64)
                .map_err(Error::polars(format!("workbook: {}", c.name())))?;
            let v = s
                .as_materialized_series()
                .f64()
                .map_err(Error::polars(format!("workbook: {}", c.name())))?
                .iter()
                .collect();
            numbers.push(Some(v));
            texts.push(None);
        }
    }
    let mut sheets = 0;
    for what in ACTIONS {
        let rows: Vec<usize> = (0..df.height())
            .filter(|i| action[*i].as_deref() == Some(what))
            .collect();
        if rows.is_empty() {
            continue;
        }
        for (part, chunk) in rows.chunks(MAX_ROWS).enumerate() {
            let ws = wb.add_worksheet();
            let name = if part == 0 {
                what.to_string()
            } else {
                format!("{what} ({})", part + 1)
            };
            ws.set_name(&name).map_err(xlsx)?;
            write_sheet(
                ws,
                chunk,
                &names,
                &kinds,
                &numbers,
                &texts,
                [&header, &money, &probability, &whole, &months],
            )?;
            sheets += 1;
        }
    }
    if sheets == 0 {
        let ws = wb.add_worksheet();
        ws.set_name("contact").map_err(xlsx)?;
        write_sheet(
            ws,
            &[],
            &names,
            &kinds,
            &numbers,
            &texts,
            [&header, &money, &probability, &whole, &months],
        )?;
    }
    wb.save_to_buffer().map_err(xlsx)
}

fn write_sheet(
    ws: &mut Worksheet,
    rows: &[usize],
    names: &[String],
    kinds: &[Kind],
    numbers: &[Option<Vec<Option<f64>>>],
    texts: &[Option<Vec<Option<String>>>],
    [header, money, probability, whole, months]: [&Format; 5],
) -> Result<()> {
    for (c, name) in names.iter().enumerate() {
        let col = c as u16;
        ws.write_string_with_format(0, col, name, header)
            .map_err(xlsx)?;
        let text = note(name);
        if !text.is_empty() {
            ws.insert_note(0, col, &Note::new(text).set_author("winback"))
                .map_err(xlsx)?;
        }
        let width: f64 = match kinds[c] {
            Kind::Text if name.starts_with("reason_") => 28.0,
            Kind::Text => 14.0,
            _ => 13.0,
        };
        ws.set_column_width(col, width.max(name.len() as f64 * 0.9).min(40.0))
            .map_err(xlsx)?;
    }
    for (r, &i) in rows.iter().enumerate() {
        let row = r as u32 + 1;
        for c in 0..names.len() {
            let col = c as u16;
            if let Some(v) = &numbers[c] {
                let Some(x) = v[i].filter(|x| x.is_finite()) else {
                    continue;
                };
                let format = match kinds[c] {
                    Kind::Probability => probability,
                    Kind::Whole => whole,
                    Kind::Months => months,
                    _ => money,
                };
                ws.write_number_with_format(row, col, x, format)
                    .map_err(xlsx)?;
            } else if let Some(v) = &texts[c]
                && let Some(s) = &v[i]
            {
                ws.write_string(row, col, s).map_err(xlsx)?;
            }
        }
    }
    ws.set_freeze_panes(1, 0).map_err(xlsx)?;
    if !names.is_empty() {
        ws.autofilter(0, 0, rows.len() as u32, names.len() as u16 - 1)
            .map_err(xlsx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_figures_are_rounded_to_cents_and_probabilities_to_four_decimals() {
        let df = df!(
            "p_return_upgrade" => [0.123456789],
            "recapture_rate" => [0.987654321],
            "profit" => [1234.5678],
            "rank" => [3u32],
        )
        .unwrap();
        let r = for_people(&df).unwrap();
        let f = |n: &str| r.column(n).unwrap().f64().unwrap().get(0).unwrap();
        assert_eq!(f("p_return_upgrade"), 0.1235);
        assert_eq!(f("recapture_rate"), 0.9877);
        assert_eq!(f("profit"), 1234.57);
        assert_eq!(r.column("rank").unwrap().u32().unwrap().get(0), Some(3));
    }

    #[test]
    fn a_workbook_has_a_sheet_per_action_present() {
        let df = df!(
            "subscriber_id" => ["a", "b", "c"],
            "rank" => [Some(1u32), None, Some(2)],
            "action" => ["contact", "holdout", "contact"],
            "expected_incremental_profit" => [12.345, 3.0, 1.0],
            "p_return_upgrade" => [0.5, 0.25, 0.125],
        )
        .unwrap();
        let bytes =
            target_list(&df, chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()).unwrap();
        let again =
            target_list(&df, chrono::NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()).unwrap();
        assert_eq!(bytes, again, "the same list, the same bytes");
        // An xlsx file is a zip archive.
        assert_eq!(&bytes[..2], b"PK");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("xl/worksheets/sheet2.xml"));
        assert!(!text.contains("xl/worksheets/sheet3.xml"));
    }
}
