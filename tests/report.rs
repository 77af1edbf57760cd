//! The campaign report as a person sees it: `winback run` on a small
//! generated history writes `report/index.html` and `target_list.xlsx`;
//! headless Chromium (Debian's `chromium`, which `.ci/run` installs)
//! renders the page at 1280 px and at a phone's 390 px, takes full-page
//! screenshots, and a check script run in the page reports the sections,
//! charts, broken images or links, horizontal overflow and the text, which
//! must hold the arms' figures from `arm_summary`. A run on data with no
//! win-back offers still writes a whole page that says what is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{generate, read, texts, winback};
use polars::prelude::*;
use serde_json::Value;

const SECTIONS: [&str; 6] = [
    "decision",
    "contacts",
    "list",
    "confidence",
    "churn",
    "data",
];

/// The browser: `WINBACK_CHROMIUM`, else the first of the usual names on
/// the PATH. The suite needs one; `.ci/run` installs Debian's.
fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("WINBACK_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(paths) = std::env::var("PATH") {
            for dir in std::env::split_paths(&paths) {
                let p = dir.join(name);
                if p.is_file() {
                    return p;
                }
            }
        }
    }
    panic!(
        "no Chromium found (chromium, chromium-browser or google-chrome on the PATH, or WINBACK_CHROMIUM): install Debian's `chromium` (.ci/run does)"
    );
}

/// Runs headless Chromium on `page` with `args`; returns stdout.
fn browse(page: &Path, profile: &Path, args: &[String]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The check script's findings for `page` rendered `width` px wide.
/// Headless Chromium will not make a window narrower than 500 px, so the
/// page is loaded in an iframe of that width (its own viewport, as on a
/// phone) in a wrapper page beside it, whose script inspects the frame and
/// writes its findings into the DOM that Chromium dumps.
fn check(page: &Path, width: u32, work: &Path) -> Value {
    let script = r#"
var f = document.getElementById('page');
f.addEventListener('load', function () {
  var d = f.contentDocument, w = f.contentWindow;
  var r = {};
  r.sections = Array.from(d.querySelectorAll('section')).map(function (s) { return s.id; });
  r.figures = Array.from(d.querySelectorAll('figure.chart')).map(function (e) {
    var svg = e.querySelector('svg');
    var box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    return { id: e.id, width: Math.round(box.width), height: Math.round(box.height), shapes: svg ? svg.querySelectorAll('path, rect, circle, polyline, line').length : 0 };
  });
  r.broken_images = Array.from(d.images).filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  r.links = Array.from(d.querySelectorAll('a[href]')).map(function (a) { return a.getAttribute('href'); });
  r.scroll_width = d.documentElement.scrollWidth;
  r.inner_width = w.innerWidth;
  r.height = d.documentElement.scrollHeight;
  r.smallest_text = Math.min.apply(null, Array.from(d.querySelectorAll('p, td, th, figcaption')).map(function (e) { return parseFloat(w.getComputedStyle(e).fontSize); }));
  r.text = d.body.innerText;
  var pre = document.createElement('pre');
  pre.id = 'winback-check';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
"#;
    let wrapper = page.with_file_name(format!("probe-{width}.html"));
    std::fs::write(
        &wrapper,
        format!(
            "<!DOCTYPE html><html><body style=\"margin:0\"><iframe id=\"page\" src=\"index.html\" style=\"width:{width}px;height:900px;border:0\"></iframe><script>{script}</script></body></html>"
        ),
    )
    .unwrap();
    let dom = browse(
        &wrapper,
        &work.join(format!("profile-dom-{width}")),
        &[
            "--dump-dom".into(),
            format!("--window-size={},900", width.max(500)),
        ],
    );
    std::fs::remove_file(&wrapper).unwrap();
    let start = dom
        .find("<pre id=\"winback-check\">")
        .unwrap_or_else(|| panic!("the check script did not run: {dom}"));
    let rest = &dom[start + "<pre id=\"winback-check\">".len()..];
    let json = &rest[..rest.find("</pre>").unwrap()];
    let json = json
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    let r: Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("check output: {e}: {json}"));
    assert_eq!(
        r["inner_width"].as_f64(),
        Some(width as f64),
        "the frame's viewport"
    );
    r
}

/// A screenshot of the page `width` px wide and `height` tall, in the
/// same wrapper; returns the PNG's size.
fn screenshot(page: &Path, width: u32, height: u32, png: &Path, work: &Path) -> (u32, u32) {
    let wrapper = page.with_file_name(format!("shot-{width}.html"));
    std::fs::write(
        &wrapper,
        format!(
            "<!DOCTYPE html><html><body style=\"margin:0\"><iframe src=\"index.html\" style=\"width:{width}px;height:{height}px;border:0;display:block\"></iframe></body></html>"
        ),
    )
    .unwrap();
    browse(
        &wrapper,
        &work.join(format!("profile-shot-{width}")),
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={},{height}", width.max(500)),
        ],
    );
    std::fs::remove_file(&wrapper).unwrap();
    let bytes = std::fs::read(png).expect("a screenshot");
    assert_eq!(&bytes[1..4], b"PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Money as the report writes it: `$1,234`, `-$56`.
fn money(v: f64) -> String {
    let whole = v.abs().round() as u64;
    let s = whole.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}${out}", if v < -0.5 { "-" } else { "" })
}

fn run(data: &Path, out: &Path) -> String {
    let o = winback(&[
        "-q",
        "run",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml"),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, stderr) = texts(&o);
    assert!(o.status.success(), "run failed: {stderr}\n{stdout}");
    stdout
}

fn assert_whole_page(c: &Value, width: u32) {
    let sections: Vec<&str> = c["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(sections, SECTIONS, "sections at {width} px");
    assert_eq!(c["broken_images"], 0, "broken images at {width} px");
    let (scroll, inner) = (
        c["scroll_width"].as_f64().unwrap(),
        c["inner_width"].as_f64().unwrap(),
    );
    assert!(
        scroll <= inner,
        "the page scrolls sideways at {width} px: {scroll} > {inner}"
    );
    assert!(
        c["smallest_text"].as_f64().unwrap() >= 12.0,
        "text smaller than 12 px at {width} px: {}",
        c["smallest_text"]
    );
}

#[test]
fn the_report_renders_in_chromium_with_every_section_chart_and_the_arms_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    generate(&data, 6000, 5);
    let stdout = run(&data, &out);
    let page = out.join("report").join("index.html");
    assert!(stdout.contains("report:"), "{stdout}");
    assert!(page.is_file());
    let xlsx = std::fs::read(out.join("simulate").join("target_list.xlsx")).unwrap();
    assert_eq!(&xlsx[..2], b"PK", "target_list.xlsx is a zip archive");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "the report runs no script");
    assert!(
        !html.contains(" src=") && !html.contains("href=\"http") && !html.contains("url("),
        "the report fetches nothing"
    );

    let wide = check(&page, 1280, tmp.path());
    assert_whole_page(&wide, 1280);
    let figures = wide["figures"].as_array().unwrap();
    let ids: Vec<&str> = figures.iter().map(|f| f["id"].as_str().unwrap()).collect();
    for id in [
        "chart-profit-recapture",
        "chart-incremental",
        "chart-profit-curve",
        "chart-segments",
        "chart-off-policy",
        "chart-calibration-return",
        "chart-calibration-churn",
        "chart-calibration-second-lifetime",
        "chart-gains",
        "chart-qini",
        "chart-churn-deciles",
    ] {
        assert!(ids.contains(&id), "chart {id} missing: {ids:?}");
    }
    for f in figures {
        assert!(
            f["width"].as_f64().unwrap() >= 300.0 && f["height"].as_f64().unwrap() >= 150.0,
            "chart {} drawn too small at 1280 px: {f}",
            f["id"]
        );
        assert!(
            f["shapes"].as_f64().unwrap() >= 5.0,
            "chart {} is empty: {f}",
            f["id"]
        );
    }
    // Every local link resolves (the CSV behind each chart, the lists).
    for link in wide["links"].as_array().unwrap() {
        let link = link.as_str().unwrap();
        if let Some(id) = link.strip_prefix('#') {
            assert!(html.contains(&format!("id=\"{id}\"")), "anchor {link}");
        } else {
            assert!(
                page.parent().unwrap().join(link).is_file(),
                "broken link {link}"
            );
        }
    }
    // The arms' figures from arm_summary are on the page.
    let arms = read(&out.join("simulate").join("arm_summary.parquet"));
    let names = arms.column("arm").unwrap().str().unwrap().clone();
    let profit = arms.column("profit").unwrap().f64().unwrap().clone();
    let rate = arms
        .column("recapture_rate")
        .unwrap()
        .f64()
        .unwrap()
        .clone();
    let text = wide["text"].as_str().unwrap();
    for i in 0..arms.height() {
        let (arm, p, r) = (
            names.get(i).unwrap(),
            profit.get(i).unwrap(),
            rate.get(i).unwrap(),
        );
        assert!(text.contains(arm), "{arm} not on the page");
        assert!(
            text.contains(&money(p)),
            "{arm}'s profit {} not on the page",
            money(p)
        );
        assert!(
            text.contains(&format!("{:.1}%", r * 100.0)),
            "{arm}'s recapture rate not on the page"
        );
    }
    // The return model's candidates, each with its policy's value on past
    // offers no model saw, and the sentence saying which was kept.
    let ev: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("models/v0001/evaluation.json")).unwrap(),
    )
    .unwrap();
    let ret = ev["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "return")
        .unwrap();
    let choice = ret["choice"].as_str().unwrap();
    assert!(text.contains(choice), "the return model's choice: {choice}");
    for c in ret["candidates"].as_array().unwrap() {
        let learner = c["learner"].as_str().unwrap();
        let dr = c["policy_value"]["dr"]["estimate"].as_f64().unwrap();
        assert!(text.contains(learner), "{learner} not on the page");
        assert!(
            text.contains(&money(dr)),
            "{learner}'s policy value {} not on the page",
            money(dr)
        );
    }
    let height = wide["height"].as_f64().unwrap() as u32;
    let (w, h) = screenshot(
        &page,
        1280,
        height,
        &tmp.path().join("wide.png"),
        tmp.path(),
    );
    assert_eq!((w, h), (1280, height));
    let png = std::fs::metadata(tmp.path().join("wide.png"))
        .unwrap()
        .len();
    assert!(
        png > 100_000,
        "a screenshot of a whole page, not a blank one ({png} bytes)"
    );

    let phone = check(&page, 390, tmp.path());
    assert_whole_page(&phone, 390);
    for f in phone["figures"].as_array().unwrap() {
        assert!(
            f["width"].as_f64().unwrap() <= 390.0 && f["width"].as_f64().unwrap() >= 250.0,
            "chart {} does not fit a phone: {f}",
            f["id"]
        );
    }
    let height = phone["height"].as_f64().unwrap() as u32;
    let (w, _) = screenshot(
        &page,
        390,
        height,
        &tmp.path().join("phone.png"),
        tmp.path(),
    );
    assert_eq!(
        w, 500,
        "the window (the page is the frame's 390 px at its left)"
    );
    if let Ok(dir) = std::env::var("WINBACK_SCREENSHOTS") {
        std::fs::copy(
            tmp.path().join("wide.png"),
            Path::new(&dir).join("report-1280.png"),
        )
        .unwrap();
        std::fs::copy(
            tmp.path().join("phone.png"),
            Path::new(&dir).join("report-390.png"),
        )
        .unwrap();
    }
}

#[test]
fn a_run_on_data_without_offers_writes_a_whole_report_that_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    generate(&data, 3000, 8);
    std::fs::remove_file(data.join("winback_offers.parquet")).unwrap();
    let stdout = run(&data, &out);
    assert!(stdout.contains("simulate skipped"), "{stdout}");
    let page = out.join("report").join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for id in SECTIONS {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    assert!(html.contains("No simulation in this run"), "says why");
    assert!(html.contains("has no return"), "names the missing model");
    assert!(!out.join("simulate").exists());
    let c = check(&page, 1280, tmp.path());
    assert_whole_page(&c, 1280);
    // The churn section still has its chart: scores exist.
    let ids: Vec<String> = c["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"chart-churn-deciles".to_string()), "{ids:?}");
    assert!(!ids.contains(&"chart-profit-curve".to_string()));
}

#[test]
fn a_report_without_scores_or_simulation_says_so_and_never_breaks() {
    // Only validate and features have run: the report command still writes
    // a page, each section naming what is absent.
    let tmp = tempfile::tempdir().unwrap();
    let (data, out) = (tmp.path().join("data"), tmp.path().join("out"));
    generate(&data, 1500, 9);
    let o = winback(&[
        "-q",
        "validate",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml"),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", texts(&o).1);
    let o = winback(&[
        "-q",
        "report",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", texts(&o).1);
    let html = std::fs::read_to_string(out.join("report").join("index.html")).unwrap();
    assert!(html.contains("No churn scores in this run"));
    assert!(html.contains("No simulation in this run"));
    assert!(html.contains("No model evaluation"));
    assert!(
        html.contains("rows read from"),
        "the data section has the validation"
    );
    let rows: i64 = read_csv_rows(&out.join("report").join("data_tables.csv"));
    assert!(rows >= 2);
}

fn read_csv_rows(path: &Path) -> i64 {
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .unwrap()
        .finish()
        .unwrap()
        .height() as i64
}
