//! The page's building blocks: escaping, number formats for people,
//! tables, figures and the style sheet. No script; everything inline.

use std::fmt::Write;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Digits grouped by thousands: `1234567` as `1,234,567`.
fn grouped(whole: u64) -> String {
    let s = whole.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Money in whole dollars: `$1,234`, `-$56`.
pub fn money(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let sign = if v < -0.5 { "-" } else { "" };
    format!("{sign}${}", grouped(v.abs().round() as u64))
}

/// Money with cents: `$12.34`.
pub fn cents(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let sign = if v < -0.005 { "-" } else { "" };
    let c = (v.abs() * 100.0).round() as u64;
    format!("{sign}${}.{:02}", grouped(c / 100), c % 100)
}

/// Money on a chart axis: `$120k`, `$1.2M`.
pub fn money_axis(v: f64) -> String {
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a >= 1e6 {
        format!("{sign}${:.1}M", a / 1e6)
    } else if a >= 1e4 {
        format!("{sign}${:.0}k", a / 1e3)
    } else if a >= 1e3 {
        format!("{sign}${:.1}k", a / 1e3)
    } else {
        format!("{sign}${a:.0}")
    }
}

/// A count: `1,096`.
pub fn count(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let sign = if v < -0.5 { "-" } else { "" };
    format!("{sign}{}", grouped(v.abs().round() as u64))
}

/// A share as a percentage with one decimal: `47.5%`.
pub fn pct(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    format!("{:.1}%", v * 100.0)
}

/// A plain number with `d` decimals, or `n/a`.
pub fn num(v: Option<f64>, d: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.d$}"),
        _ => "n/a".into(),
    }
}

/// A table: header cells, rows of already-escaped HTML cells; the
/// columns listed in `numeric` are right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>], numeric: &[usize]) -> String {
    let mut out = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if numeric.contains(&i) {
            " class=\"n\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if numeric.contains(&i) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// A chart in a figure with its caption and the file holding its data.
pub fn figure(id: &str, svg: &str, caption: &str, data_file: &str) -> String {
    format!(
        "<figure class=\"chart\" id=\"{}\">\n{}\n<figcaption>{} <span class=\"data\">Data: <a href=\"{}\">{}</a></span></figcaption>\n</figure>\n",
        esc(id),
        svg,
        caption,
        esc(data_file),
        esc(data_file)
    )
}

/// A box saying what is missing and why.
pub fn missing(what: &str) -> String {
    format!("<p class=\"missing\">{what}</p>\n")
}

/// The style sheet: readable from 320 px to wide screens, charts scale to
/// the column's width, wide tables scroll inside their box.
pub const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1b1b1b; background: #f4f5f7; }
main { max-width: 1040px; margin: 0 auto; padding: 16px; }
header.top { background: #0b3d5c; color: #fff; padding: 20px 16px; }
header.top div { max-width: 1040px; margin: 0 auto; }
header.top h1 { margin: 0 0 4px; font-size: 1.6rem; }
header.top p { margin: 0; opacity: .9; }
nav { max-width: 1040px; margin: 0 auto; padding: 8px 16px 0; display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: .95rem; }
nav a { color: #0b3d5c; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { margin-top: 0; font-size: 1.35rem; color: #0b3d5c; }
h3 { font-size: 1.1rem; margin: 20px 0 8px; }
p.lead { font-size: 1.08rem; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 10px; margin: 12px 0; }
.kpi { background: #eef4f8; border-radius: 6px; padding: 10px 12px; }
.kpi b { display: block; font-size: 1.3rem; }
.kpi span { font-size: .85rem; color: #444; }
figure.chart { margin: 12px 0; }
figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { font-size: .9rem; color: #444; }
figcaption .data { white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; margin: 8px 0; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e2e2e2; text-align: left; vertical-align: top; }
th { background: #f0f2f4; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.legend { display: inline-flex; flex-wrap: wrap; gap: 4px 12px; margin-right: 8px; }
.legend i { display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -1px; }
.missing { background: #fff6e0; border-left: 4px solid #e69f00; padding: 8px 12px; }
.note { color: #555; font-size: .9rem; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(400px, 100%), 1fr)); gap: 12px; }
dfn { font-style: normal; border-bottom: 1px dotted #555; }
footer { color: #666; font-size: .85rem; padding: 8px 16px 24px; max-width: 1040px; margin: 0 auto; }
@media (max-width: 480px) { body { font-size: 15px; } section { padding: 12px; } main { padding: 8px; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(money(318931.63), "$318,932");
        assert_eq!(money(-5212.3), "-$5,212");
        assert_eq!(money(0.2), "$0");
        assert_eq!(cents(107.412933), "$107.41");
        assert_eq!(cents(-0.004), "$0.00");
        assert_eq!(count(1096.0), "1,096");
        assert_eq!(pct(0.474578), "47.5%");
        assert_eq!(money_axis(120_000.0), "$120k");
        assert_eq!(money_axis(-1_500_000.0), "-$1.5M");
        assert_eq!(num(None, 2), "n/a");
        assert_eq!(esc("<a & 'b'>"), "&lt;a &amp; &#39;b&#39;&gt;");
    }
}
