//! The report's charts, drawn with plotters' SVG backend into strings that
//! the page inlines. Text is left to the browser (SVG `<text>`), so no font
//! is loaded; every chart has a `viewBox` and scales to the page's width.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// Width and height of every chart, in SVG user units.
const SIZE: (u32, u32) = (760, 380);

/// Width and height of a chart drawn for two side by side.
const SMALL: (u32, u32) = (480, 400);

/// The series colours (Okabe–Ito, readable by colour-blind readers).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(120, 120, 120),
];

const GREY: RGBColor = RGBColor(110, 110, 110);
const FONT: &str = "sans-serif";

fn draw_error(chart: &str) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Render {
        what: chart.to_string(),
        message,
    }
}

/// Draws on a fresh SVG canvas and returns the SVG text.
fn svg(
    chart: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .map_err(draw_error(chart))?;
        draw(&root).map_err(draw_error(chart))?;
        root.present()
            .map_err(|e| e.to_string())
            .map_err(draw_error(chart))?;
    }
    Ok(out)
}

/// Lower and upper bounds of `values` with a margin, always containing
/// `include` (zero for bars, so that they start on the axis).
fn span(values: impl IntoIterator<Item = f64>, include: Option<f64>) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in values.into_iter().chain(include).filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if hi.abs() > 0.0 { hi.abs() * 0.1 } else { 1.0 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.08;
    let lo = if include == Some(lo) { lo } else { lo - pad };
    (lo, hi + pad)
}

/// One labelled category with a value and an optional interval.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Category label.
    pub label: String,
    /// Bar length.
    pub value: f64,
    /// 90% interval, drawn as a whisker.
    pub interval: Option<(f64, f64)>,
}

/// Horizontal bars, one per category (first at the top), each with its
/// interval as a whisker; several series are drawn side by side within a
/// category, in [`PALETTE`]'s order (the page's [`legend`] names them).
pub fn bars(
    chart: &str,
    x_desc: &str,
    series: &[(&str, Vec<Bar>)],
    format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let categories: Vec<String> = series
        .first()
        .map(|(_, b)| b.iter().map(|b| b.label.clone()).collect())
        .unwrap_or_default();
    let n = categories.len().max(1);
    let (lo, hi) = span(
        series.iter().flat_map(|(_, bars)| {
            bars.iter().flat_map(|b| {
                [
                    Some(b.value),
                    b.interval.map(|i| i.0),
                    b.interval.map(|i| i.1),
                ]
                .into_iter()
                .flatten()
            })
        }),
        Some(0.0),
    );
    let groups = series.len().max(1);
    svg(chart, SIZE, |root| {
        let label_width = categories.iter().map(|c| c.len()).max().unwrap_or(4) as u32 * 8 + 16;
        let mut c = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(label_width.min(260))
            .build_cartesian_2d(lo..hi, -0.5..(n as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        let cats = categories.clone();
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                let i = y.round();
                if (y - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                let i = n - 1 - i as usize;
                cats.get(i).cloned().unwrap_or_default()
            })
            .x_labels(6)
            .x_label_formatter(&|x| format(*x))
            .x_desc(x_desc)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        let height = 0.8 / groups as f64;
        for (g, (_, data)) in series.iter().enumerate() {
            let color = PALETTE[g % PALETTE.len()];
            let rects = data.iter().enumerate().map(|(i, b)| {
                let y = (n - 1 - i) as f64 + 0.4 - g as f64 * height;
                Rectangle::new(
                    [(0.0, y), (b.value, y - height * 0.9)],
                    color.mix(0.85).filled(),
                )
            });
            c.draw_series(rects).map_err(|e| e.to_string())?;
            for (i, b) in data.iter().enumerate() {
                if let Some((l, h)) = b.interval {
                    let y = (n - 1 - i) as f64 + 0.4 - (g as f64 + 0.45) * height;
                    let cap = height * 0.25;
                    c.draw_series([
                        PathElement::new(vec![(l, y), (h, y)], BLACK.stroke_width(2)),
                        PathElement::new(vec![(l, y - cap), (l, y + cap)], BLACK.stroke_width(2)),
                        PathElement::new(vec![(h, y - cap), (h, y + cap)], BLACK.stroke_width(2)),
                    ])
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
}

/// An HTML legend of the series names in [`PALETTE`]'s colours, for the
/// caption of a chart with several series of bars.
pub fn legend(names: &[&str]) -> String {
    let mut out = String::from("<span class=\"legend\">");
    for (k, n) in names.iter().enumerate() {
        let RGBColor(r, g, b) = PALETTE[k % PALETTE.len()];
        out.push_str(&format!(
            "<span><i style=\"background:rgb({r},{g},{b})\"></i>{}</span>",
            n.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    out.push_str("</span>");
    out
}

/// The axes of a chart of two numbers: ranges, descriptions, tick
/// formats, a light grid.
type Xy<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn xy<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    (x_desc, y_desc): (&str, &str),
    (x_format, y_format): (&dyn Fn(f64) -> String, &dyn Fn(f64) -> String),
) -> std::result::Result<Xy<'a, 'b>, String> {
    let mut c = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&|x| x_format(*x))
        .y_label_formatter(&|y| y_format(*y))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// A labelled point with an interval on y.
#[derive(Debug, Clone)]
pub struct LabelledPoint {
    /// Label drawn beside the point.
    pub label: String,
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// Interval on y.
    pub y_interval: Option<(f64, f64)>,
    /// Interval on x.
    pub x_interval: Option<(f64, f64)>,
}

/// Points with cross-shaped interval whiskers and labels: one chart of two
/// quantities that may rank the categories in opposite orders.
pub fn labelled_points(
    chart: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[LabelledPoint],
    x_format: &dyn Fn(f64) -> String,
    y_format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let (x0, x1) = span(
        points.iter().flat_map(|p| {
            [
                Some(p.x),
                p.x_interval.map(|i| i.0),
                p.x_interval.map(|i| i.1),
            ]
            .into_iter()
            .flatten()
        }),
        None,
    );
    let (y0, y1) = span(
        points.iter().flat_map(|p| {
            [
                Some(p.y),
                p.y_interval.map(|i| i.0),
                p.y_interval.map(|i| i.1),
            ]
            .into_iter()
            .flatten()
        }),
        None,
    );
    // Room on the right for the labels.
    let x1 = x1 + (x1 - x0) * 0.12;
    svg(chart, SIZE, |root| {
        let mut c = xy(
            root,
            (x0..x1, y0..y1),
            (x_desc, y_desc),
            (x_format, y_format),
        )?;
        for (k, p) in points.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            if let Some((l, h)) = p.y_interval {
                c.draw_series([PathElement::new(
                    vec![(p.x, l), (p.x, h)],
                    color.stroke_width(2),
                )])
                .map_err(|e| e.to_string())?;
            }
            if let Some((l, h)) = p.x_interval {
                c.draw_series([PathElement::new(
                    vec![(l, p.y), (h, p.y)],
                    color.stroke_width(2),
                )])
                .map_err(|e| e.to_string())?;
            }
            c.draw_series([Circle::new((p.x, p.y), 6, color.filled())])
                .map_err(|e| e.to_string())?;
            c.draw_series([Text::new(
                p.label.clone(),
                (p.x + (x1 - x0) * 0.015, p.y),
                (FONT, 15).into_font().color(&BLACK),
            )])
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// A named line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend entry.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a reference, such as random targeting).
    pub dashed: bool,
    /// Index into [`PALETTE`] (default: the line's position).
    pub color: Option<usize>,
}

/// A vertical marker on a line chart.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Where.
    pub x: f64,
    /// What it marks.
    pub label: String,
}

/// Lines on shared axes, with optional vertical markers and the diagonal
/// y = x (for calibration); `small` draws a chart for two side by side.
#[allow(clippy::too_many_arguments)]
pub fn lines(
    chart: &str,
    small: bool,
    x_desc: &str,
    y_desc: &str,
    series: &[Line],
    markers: &[Marker],
    diagonal: bool,
    x_format: &dyn Fn(f64) -> String,
    y_format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let (mut x0, mut x1) = span(all().map(|p| p.0), None);
    let (mut y0, mut y1) = span(all().map(|p| p.1), Some(0.0));
    if diagonal {
        let lo = x0.min(y0).max(0.0);
        let hi = x1.max(y1);
        (x0, x1, y0, y1) = (lo, hi, lo, hi);
    }
    svg(chart, if small { SMALL } else { SIZE }, |root| {
        let mut c = xy(
            root,
            (x0..x1, y0..y1),
            (x_desc, y_desc),
            (x_format, y_format),
        )?;
        if diagonal {
            c.draw_series(DashedLineSeries::new(
                [(x0, x0), (x1, x1)],
                6,
                4,
                GREY.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], GREY));
        }
        for (k, s) in series.iter().enumerate() {
            let color = PALETTE[s.color.unwrap_or(k) % PALETTE.len()];
            let style = color.stroke_width(if s.dashed { 1 } else { 3 });
            let drawn = if s.dashed {
                c.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))
            } else {
                c.draw_series(LineSeries::new(s.points.clone(), style))
            }
            .map_err(|e| e.to_string())?;
            if !s.name.is_empty() {
                drawn.label(s.name.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(3))
                });
            }
            if !s.dashed && s.points.len() <= 12 {
                c.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
        }
        for m in markers {
            c.draw_series([PathElement::new(
                vec![(m.x, y0), (m.x, y1)],
                BLACK.stroke_width(1),
            )])
            .map_err(|e| e.to_string())?;
            // Labels right of the marker on the left half, left of it on
            // the right half.
            let right_half = m.x > x0 + (x1 - x0) * 0.5;
            let h = if right_half { HPos::Right } else { HPos::Left };
            let pad = (x1 - x0) * 0.01 * if right_half { -1.0 } else { 1.0 };
            c.draw_series([Text::new(
                m.label.clone(),
                (m.x + pad, y1 - (y1 - y0) * 0.02),
                (FONT, 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(h, VPos::Top)),
            )])
            .map_err(|e| e.to_string())?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(GREY)
            .label_font((FONT, 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_scalable_svg_with_their_labels() {
        let s = bars(
            "test",
            "profit",
            &[(
                "profit",
                vec![
                    Bar {
                        label: "upgrade".into(),
                        value: 3.0,
                        interval: Some((2.0, 4.0)),
                    },
                    Bar {
                        label: "both".into(),
                        value: -1.0,
                        interval: None,
                    },
                ],
            )],
            &|v| format!("{v:.0}"),
        )
        .unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40]);
        assert!(s.contains("viewBox=\"0 0 760 380\""));
        assert!(s.contains("upgrade") && s.contains("both"), "{s}");
    }

    #[test]
    fn a_flat_or_empty_series_still_has_an_axis() {
        assert_eq!(span([], None), (0.0, 1.0));
        let (lo, hi) = span([5.0, 5.0], None);
        assert!(lo < 5.0 && hi > 5.0);
        let (lo, _) = span([1.0, 2.0], Some(0.0));
        assert_eq!(lo, 0.0);
    }
}
