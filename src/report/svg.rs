//! Small, dependency-free SVG charts for the report: lines (or minute steps) on one or two
//! labelled y axes, 95 % confidence bars, p50/p95/p99 lines, horizontal bars for instance
//! timelines, vertical markers and shaded spans. Self-contained text: a report opens anywhere
//! without network access or fonts to fetch.
//!
//! What every chart guarantees (checked in a real browser by the test suite): every series is
//! in the legend (the legend wraps onto as many rows as it needs), everything drawn stays inside
//! the plot area (lines are clipped to it, ranges include every point and bar), both axes say
//! their unit, and each point shows its values on hover (`<title>`).

use std::fmt::Write as _;

/// Which y axis a series uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Left.
    Left,
    /// Right (a second unit, e.g. DB connections beside latency).
    Right,
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A line through the points.
    Line,
    /// A step per point, holding its value until the next (a CloudWatch period `[t, t+60)`).
    Step,
}

/// One data series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, in x order.
    pub points: Vec<(f64, f64)>,
    /// Half-width of a confidence bar per point, if any.
    pub errors: Option<Vec<f64>>,
    /// Axis.
    pub axis: Axis,
    /// Draw markers at points as well as the line.
    pub dots: bool,
    /// Line or steps.
    pub shape: Shape,
    /// The width of a step (s), for [`Shape::Step`].
    pub step: f64,
    /// A fixed colour (otherwise the palette's next; right-axis series take the cloud palette).
    pub color: Option<&'static str>,
    /// A dash pattern (`"6 3"`): p50, p95 and p99 of one endpoint share its colour and differ
    /// by it. Right-axis series are dashed unless they say otherwise.
    pub dash: Option<&'static str>,
}

/// The dash patterns of a series' percentiles: p50 solid, p95 dashed, p99 dotted.
pub fn percentile_dash(q: &str) -> Option<&'static str> {
    match q {
        "p95" => Some("7 3"),
        "p99" => Some("2 3"),
        _ => None,
    }
}

impl Series {
    /// A line on the left axis.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            errors: None,
            axis: Axis::Left,
            dots: false,
            shape: Shape::Line,
            step: 60.0,
            color: None,
            dash: None,
        }
    }

    /// Minute steps on the right axis (a CloudWatch series beside client figures).
    pub fn steps_right(name: impl Into<String>, points: Vec<(f64, f64)>, width: f64) -> Series {
        Series {
            axis: Axis::Right,
            shape: Shape::Step,
            step: width,
            ..Series::line(name, points)
        }
    }
}

/// A vertical marker.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Where.
    pub x: f64,
    /// Label.
    pub label: String,
    /// Colour.
    pub color: &'static str,
}

/// A horizontal bar (one state of one instance): row, from, to, colour, hover text.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Row index (0 at the top).
    pub row: usize,
    /// Start.
    pub from: f64,
    /// End.
    pub to: f64,
    /// Colour.
    pub color: &'static str,
    /// Hover text.
    pub label: String,
}

/// A chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label, with its unit.
    pub x_label: String,
    /// Left axis label, with its unit.
    pub y_label: String,
    /// Right axis label, with its unit (drawn when a series uses it).
    pub y2_label: String,
    /// Series.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// Shaded x spans (start, end, label).
    pub spans: Vec<(f64, f64, String)>,
    /// Hatched x spans (start, end, label): seconds a run covers only in part, whose counts are
    /// shown as rates over the part covered.
    pub hatched: Vec<(f64, f64, String)>,
    /// A fixed x range (a run's own span): what lies outside is clipped, never stretches it.
    pub x_range: Option<(f64, f64)>,
    /// The run a per-run chart shows (its id and span on the x axis), written into the SVG so
    /// a browser test can check the axis stays within the run.
    pub run: Option<(String, f64, f64)>,
    /// A logarithmic left axis (values spanning decades).
    pub log_y: bool,
    /// Horizontal bars with their row names (an instance timeline) instead of a y scale.
    pub bars: Vec<Bar>,
    /// Row names of the bars.
    pub rows: Vec<String>,
    /// Legend entries of the bars' colours: (colour, meaning).
    pub bar_legend: Vec<(&'static str, String)>,
    /// Labelled x ticks (dates on a trend) instead of numbers.
    pub x_ticks: Vec<(f64, String)>,
}

/// The palette (colour-blind friendly, distinct on screen and in screenshots).
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The palette of right-axis (cloud) series: hues the client's series do not use.
pub const CLOUD_PALETTE: [&str; 6] = [
    "#6a3d9a", "#b15928", "#33a02c", "#e31a1c", "#1b9e77", "#666666",
];

/// The colour of the `i`-th series: its own, else the next of its axis' palette.
fn color_of(series: &[Series], i: usize) -> &'static str {
    let s = &series[i];
    if let Some(c) = s.color {
        return c;
    }
    let same_axis = series[..i]
        .iter()
        .filter(|x| x.axis == s.axis && x.color.is_none())
        .count();
    match s.axis {
        Axis::Left => PALETTE[same_axis % PALETTE.len()],
        Axis::Right => CLOUD_PALETTE[same_axis % CLOUD_PALETTE.len()],
    }
}

/// The dash of a series as drawn.
fn dash_of(s: &Series) -> Option<&'static str> {
    s.dash
        .or((s.axis == Axis::Right).then_some("6 3"))
        .filter(|d| !d.is_empty())
}

/// Most hover points per series.
const MAX_HOVER_POINTS: usize = 60;
const W: f64 = 720.0;
const L: f64 = 72.0;
const R: f64 = 72.0;
const T: f64 = 34.0;
const PLOT_H: f64 = 220.0;
const LEGEND_ROW: f64 = 16.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Round tick positions covering [lo, hi].
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // From the round value at or below `lo` to the first at or above `hi`: every value inside.
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut i = 0.0;
    loop {
        let v = start + i * step;
        // `+ 0.0`: a tick at -0 reads "0", not "-0".
        out.push((v * 1e9).round() / 1e9 + 0.0);
        if v >= hi - step * 1e-9 {
            break;
        }
        i += 1.0;
    }
    out
}

/// Ticks on whole numbers only (users, rows): steps of 1, 2, 5, 10… covering [lo, hi].
pub fn whole_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = ((hi - lo) / n.max(1) as f64).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
        .max(1.0);
    let mut out = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi + 1e-9 {
        out.push(v);
        v += step;
    }
    out
}

/// A number as an axis or a tooltip shows it: whole when whole, microseconds kept below 1.
pub fn fmt_num(v: f64) -> String {
    // A value that rounds to zero reads "0", never "-0".
    let v = if v.abs() < 5e-4 { 0.0 } else { v };
    if v.abs() >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() < 1.0 {
        format!("{v:.3}")
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

struct Scale {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
    log: bool,
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        let (lo, hi, v) = if self.log {
            (self.lo.log10(), self.hi.log10(), v.max(self.lo).log10())
        } else {
            (self.lo, self.hi, v)
        };
        if hi > lo {
            self.a + (v - lo) / (hi - lo) * (self.b - self.a)
        } else {
            (self.a + self.b) / 2.0
        }
    }
}

/// The y range of some series: from 0 (or, on a log axis, the decade below the smallest
/// positive value) to a round value above the highest point or bar.
fn y_range(series: &[&Series], log: bool) -> (f64, f64) {
    let mut hi = f64::MIN;
    let mut lo_pos = f64::MAX;
    for s in series {
        for (i, (_, y)) in s.points.iter().enumerate() {
            let e = s
                .errors
                .as_ref()
                .and_then(|e| e.get(i))
                .copied()
                .unwrap_or(0.0);
            hi = hi.max(y + e);
            if *y > 0.0 {
                lo_pos = lo_pos.min(*y);
            }
        }
    }
    if hi == f64::MIN || hi <= 0.0 {
        hi = 1.0;
    }
    if log {
        let lo = 10f64.powf(lo_pos.min(hi).log10().floor());
        let top = 10f64.powf(hi.log10().ceil());
        return (lo, top.max(lo * 10.0));
    }
    // A little headroom: a line at the highest value stays off the plot's top edge.
    let t = ticks(0.0, hi * 1.04, 5);
    (0.0, *t.last().unwrap_or(&hi))
}

/// Decade ticks of a log axis.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut v = lo;
    while v <= hi * 1.0001 {
        out.push(v);
        v *= 10.0;
    }
    out
}

/// True when positive values span two decades or more: a log axis reads better.
pub fn spans_decades(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.into_iter().filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    hi > lo && hi / lo >= 100.0
}

/// Legend entries laid out in rows across the chart's width: (x, row) per entry.
fn legend_layout(labels: &[String]) -> (Vec<(f64, usize)>, usize) {
    let mut out = Vec::new();
    let (mut x, mut row) = (L, 0);
    for label in labels {
        let w = 26.0 + 6.4 * label.chars().count() as f64;
        if x + w > W - 8.0 && x > L {
            x = L;
            row += 1;
        }
        out.push((x, row));
        x += w;
    }
    (out, if labels.is_empty() { 0 } else { row + 1 })
}

impl Chart {
    /// An empty chart with its title and axis labels (units included).
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Default::default()
        }
    }

    /// A logarithmic left axis when its values span two decades or more.
    pub fn log_y_if_decades(&mut self) {
        self.log_y = spans_decades(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
    }

    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty()) && self.bars.is_empty()
    }

    /// Legend entries: (label, colour, dashed, a series' entry); series without points have none.
    fn legend_labels(&self) -> Vec<(String, &'static str, Option<&'static str>, bool)> {
        let mut out: Vec<(String, &'static str, Option<&'static str>, bool)> = self
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.points.is_empty())
            .map(|(i, s)| {
                let label = if s.axis == Axis::Right {
                    format!("{} (right axis)", s.name)
                } else {
                    s.name.clone()
                };
                (label, color_of(&self.series, i), dash_of(s), true)
            })
            .collect();
        out.extend(
            self.bar_legend
                .iter()
                .map(|(c, l)| (l.clone(), *c, None, false)),
        );
        out.extend(
            self.markers
                .iter()
                .map(|m| {
                    (
                        m.color,
                        m.label.split(' ').next_back().unwrap_or("").to_string(),
                    )
                })
                .fold(
                    Vec::<(&'static str, String)>::new(),
                    |mut acc, (c, kind)| {
                        if !acc.iter().any(|(ac, _)| *ac == c) {
                            acc.push((c, kind));
                        }
                        acc
                    },
                )
                .into_iter()
                .map(|(c, kind)| (format!("marker: {kind}"), c, Some("4 3"), false)),
        );
        if !self.hatched.is_empty() {
            out.push((
                "partial second (rate over the part covered)".into(),
                "#999999",
                None,
                false,
            ));
        }
        out
    }

    /// Renders the chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let plot_h = if self.rows.is_empty() {
            PLOT_H
        } else {
            (self.rows.len() as f64 * 22.0).clamp(60.0, 600.0)
        };
        let legend = self.legend_labels();
        let labels: Vec<String> = legend.iter().map(|(l, ..)| l.clone()).collect();
        let (positions, legend_rows) = legend_layout(&labels);
        let bottom = T + plot_h;
        let h = bottom + 46.0 + legend_rows as f64 * LEGEND_ROW + 8.0;
        let mut s = String::new();
        let series_count = self.series.iter().filter(|s| !s.points.is_empty()).count();
        let id = format!("c{:x}", fxhash(&self.title));
        let x = self.x_scale();
        let run = self
            .run
            .as_ref()
            .map(|(r, from, to)| {
                format!(
                    r#" data-run="{}" data-run-from="{from:.3}" data-run-to="{to:.3}""#,
                    esc(r)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            s,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{}" data-series="{series_count}" data-x-lo="{:.3}" data-x-hi="{:.3}"{run}>"#,
            esc(&self.title),
            x.lo,
            x.hi
        );
        let _ = write!(
            s,
            r##"<rect x="0" y="0" width="{W}" height="{h}" fill="#ffffff"/><text x="{}" y="20" text-anchor="middle" font-size="13" font-weight="bold" fill="#222">{}</text>"##,
            W / 2.0,
            esc(&truncate(&self.title, 88))
        );
        let _ = write!(
            s,
            r##"<defs><clipPath id="{id}"><rect x="{L}" y="{T}" width="{}" height="{plot_h}"/></clipPath><pattern id="{id}h" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#bbbbbb" stroke-width="2"/></pattern></defs><rect class="plot" x="{L}" y="{T}" width="{}" height="{plot_h}" fill="none"/>"##,
            W - L - R,
            W - L - R
        );
        if self.rows.is_empty() {
            self.draw_xy(&mut s, &x, bottom, &id);
        } else {
            self.draw_bars(&mut s, &x, bottom, plot_h, &id);
        }
        self.draw_x_axis(&mut s, &x, bottom);
        // Legend.
        for ((label, color, dashed, series), (lx, row)) in legend.iter().zip(&positions) {
            let kind = if *series { "series" } else { "key" };
            let ly = bottom + 46.0 + *row as f64 * LEGEND_ROW;
            let dash = dashed
                .map(|d| format!(r#" stroke-dasharray="{d}""#))
                .unwrap_or_default();
            let _ = write!(
                s,
                r##"<g class="legend-item" data-kind="{kind}"><line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"{dash}/><text x="{:.1}" y="{:.1}" font-size="11" fill="#222">{}</text></g>"##,
                ly - 4.0,
                lx + 16.0,
                ly - 4.0,
                lx + 20.0,
                ly,
                esc(label)
            );
        }
        s.push_str("</svg>");
        s
    }

    fn x_scale(&self) -> Scale {
        if let Some((lo, hi)) = self.x_range.filter(|(lo, hi)| hi > lo) {
            return Scale {
                lo,
                hi,
                a: L,
                b: W - R,
                log: false,
            };
        }
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| {
                let step = if s.shape == Shape::Step { s.step } else { 0.0 };
                s.points.iter().flat_map(move |p| [p.0, p.0 + step])
            })
            .chain(self.markers.iter().map(|m| m.x))
            .chain(self.bars.iter().flat_map(|b| [b.from, b.to]))
            .chain(self.spans.iter().flat_map(|sp| [sp.0, sp.1]))
            .filter(|v| v.is_finite())
            .collect();
        let (xlo, xhi) = if xs.is_empty() {
            (0.0, 1.0)
        } else {
            (
                xs.iter().cloned().fold(f64::MAX, f64::min),
                xs.iter().cloned().fold(f64::MIN, f64::max),
            )
        };
        let xt = ticks(xlo, xhi, 8);
        Scale {
            lo: xt[0].min(xlo),
            hi: (*xt.last().unwrap_or(&xhi)).max(xhi),
            a: L,
            b: W - R,
            log: false,
        }
    }

    fn draw_x_axis(&self, s: &mut String, x: &Scale, bottom: f64) {
        // Users and rows are whole: no tick between two of them.
        let whole = self
            .series
            .iter()
            .flat_map(|s| &s.points)
            .all(|p| p.0.fract() == 0.0);
        let labelled: Vec<(f64, String)> = if self.x_ticks.is_empty() {
            let candidates = if whole {
                whole_ticks(x.lo, x.hi, 8)
            } else {
                ticks(x.lo, x.hi, 8)
            };
            candidates
                .into_iter()
                .filter(|t| *t >= x.lo - 1e-9 && *t <= x.hi + 1e-9)
                .map(|t| (t, fmt_num(t)))
                .collect()
        } else {
            // At most ~8 labels, evenly picked.
            let every = self.x_ticks.len().div_ceil(8).max(1);
            self.x_ticks.iter().step_by(every).cloned().collect()
        };
        for (t, label) in labelled {
            let px = x.map(t);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{bottom}" x2="{px:.1}" y2="{}" stroke="#333"/><text x="{px:.1}" y="{}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
                bottom + 5.0,
                bottom + 17.0,
                esc(&label)
            );
        }
        let _ = write!(
            s,
            r##"<line class="axis" x1="{L}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/><text x="{}" y="{}" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
            W - R,
            (L + W - R) / 2.0,
            bottom + 33.0,
            esc(&self.x_label)
        );
    }

    fn draw_xy(&self, s: &mut String, x: &Scale, bottom: f64, clip: &str) {
        let left: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| s.axis == Axis::Left)
            .collect();
        let right: Vec<&Series> = self
            .series
            .iter()
            .filter(|s| s.axis == Axis::Right)
            .collect();
        let (l0, l1) = y_range(&left, self.log_y);
        let y = Scale {
            lo: l0,
            hi: l1,
            a: bottom,
            b: T,
            log: self.log_y,
        };
        let (r0, r1) = y_range(&right, false);
        let y2 = Scale {
            lo: r0,
            hi: r1,
            a: bottom,
            b: T,
            log: false,
        };
        for (a, b, label) in &self.spans {
            let (xa, xb) = (x.map(*a), x.map(*b));
            let _ = write!(
                s,
                r##"<rect class="span" clip-path="url(#{clip})" x="{xa:.1}" y="{T}" width="{:.1}" height="{:.1}" fill="#f3f0e0"><title>{}</title></rect>"##,
                (xb - xa).max(0.0),
                bottom - T,
                esc(label)
            );
        }
        for (a, b, label) in &self.hatched {
            let (xa, xb) = (x.map(*a), x.map(*b));
            let _ = write!(
                s,
                r##"<rect class="partial" clip-path="url(#{clip})" x="{xa:.1}" y="{T}" width="{:.1}" height="{:.1}" fill="url(#{clip}h)" fill-opacity="0.6"><title>{}</title></rect>"##,
                (xb - xa).max(0.0),
                bottom - T,
                esc(label)
            );
        }
        let lticks = if self.log_y {
            log_ticks(l0, l1)
        } else {
            ticks(l0, l1, 5)
        };
        for t in lticks {
            let py = y.map(t);
            let _ = write!(
                s,
                r##"<line x1="{L}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#e6e6e6"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11" fill="#333">{}</text>"##,
                W - R,
                L - 6.0,
                py + 4.0,
                fmt_num(t)
            );
        }
        let _ = write!(
            s,
            r##"<line class="axis" x1="{L}" y1="{T}" x2="{L}" y2="{bottom}" stroke="#333"/><text transform="translate(16,{}) rotate(-90)" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
            (bottom + T) / 2.0,
            esc(&format!(
                "{}{}",
                self.y_label,
                if self.log_y { " (log)" } else { "" }
            ))
        );
        if !right.is_empty() {
            for t in ticks(r0, r1, 5) {
                let _ = write!(
                    s,
                    r##"<text x="{}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
                    W - R + 6.0,
                    y2.map(t) + 4.0,
                    fmt_num(t)
                );
            }
            let _ = write!(
                s,
                r##"<line class="axis" x1="{}" y1="{T}" x2="{}" y2="{bottom}" stroke="#333"/><text transform="translate({},{}) rotate(90)" text-anchor="middle" font-size="12" fill="#555">{}</text>"##,
                W - R,
                W - R,
                W - 16.0,
                (bottom + T) / 2.0,
                esc(&self.y2_label)
            );
        }
        for m in &self.markers {
            let px = x.map(m.x);
            let _ = write!(
                s,
                r#"<line class="marker" x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{bottom}" stroke="{}" stroke-dasharray="4 3" stroke-width="1.5"><title>{}</title></line>"#,
                m.color,
                esc(&m.label)
            );
        }
        for (i, se) in self.series.iter().enumerate() {
            let color = color_of(&self.series, i);
            let ys = if se.axis == Axis::Left { &y } else { &y2 };
            self.draw_series(s, se, x, ys, color, clip);
        }
    }

    fn draw_series(
        &self,
        s: &mut String,
        se: &Series,
        x: &Scale,
        ys: &Scale,
        color: &str,
        clip: &str,
    ) {
        if se.points.is_empty() {
            return;
        }
        // A non-finite y breaks the line (a gap between two runs on a campaign's axis).
        let mut paths: Vec<Vec<String>> = vec![Vec::new()];
        for (i, (px, py)) in se.points.iter().enumerate() {
            if !py.is_finite() {
                if paths.last().is_some_and(|p| !p.is_empty()) {
                    paths.push(Vec::new());
                }
                continue;
            }
            let path = paths.last_mut().expect("one path at least");
            match se.shape {
                Shape::Line => path.push(format!("{:.1},{:.1}", x.map(*px), ys.map(*py))),
                Shape::Step => {
                    let end = se
                        .points
                        .get(i + 1)
                        .map(|n| n.0.min(px + se.step))
                        .unwrap_or(px + se.step);
                    path.push(format!("{:.1},{:.1}", x.map(*px), ys.map(*py)));
                    path.push(format!("{:.1},{:.1}", x.map(end), ys.map(*py)));
                }
            }
        }
        let dash = dash_of(se)
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        for path in paths.iter().filter(|p| !p.is_empty()) {
            let _ = write!(
                s,
                r#"<polyline class="series" clip-path="url(#{clip})" fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                path.join(" "),
                esc(&se.name)
            );
        }
        if let Some(errs) = &se.errors {
            for ((px, py), e) in se.points.iter().zip(errs) {
                let (cx, top, bot) = (x.map(*px), ys.map(py + e), ys.map((py - e).max(ys.lo)));
                let _ = write!(
                    s,
                    r#"<path class="ci" clip-path="url(#{clip})" d="M{cx:.1},{top:.1}V{bot:.1}M{:.1},{top:.1}h8M{:.1},{bot:.1}h8" stroke="{color}" fill="none"><title>{}: {} ± {} (95 % CI)</title></path>"#,
                    cx - 4.0,
                    cx - 4.0,
                    esc(&se.name),
                    fmt_num(*py),
                    fmt_num(*e)
                );
            }
        }
        // Points: visible when `dots`, always hoverable; a long series keeps one hover point in
        // every few (and its peak), so a 42-run report stays light.
        let (r, opacity) = if se.dots || se.points.len() == 1 {
            (3.5, 1.0)
        } else {
            (4.0, 0.0)
        };
        let every = se.points.len().div_ceil(MAX_HOVER_POINTS).max(1);
        let peak = se
            .points
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .map(|(i, _)| i);
        let hover = se
            .points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || Some(*i) == peak)
            .map(|(_, p)| p)
            .filter(|(px, py)| py.is_finite() && *px >= x.lo - 1e-9 && *px <= x.hi + 1e-9);
        for (px, py) in hover {
            let _ = write!(
                s,
                r#"<circle class="pt" cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}" fill-opacity="{opacity}"><title>{}: {} at {}</title></circle>"#,
                x.map(*px),
                ys.map(*py),
                esc(&se.name),
                fmt_num(*py),
                fmt_num(*px)
            );
        }
    }

    fn draw_bars(&self, s: &mut String, x: &Scale, bottom: f64, plot_h: f64, clip: &str) {
        let row_h = plot_h / self.rows.len().max(1) as f64;
        for (i, name) in self.rows.iter().enumerate() {
            let cy = T + row_h * (i as f64 + 0.5);
            let _ = write!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end" font-size="10" fill="#333">{}</text>"##,
                L - 4.0,
                cy + 3.0,
                esc(&truncate(name, 11))
            );
        }
        for b in &self.bars {
            let y0 = T + row_h * b.row as f64 + row_h * 0.2;
            let (xa, xb) = (x.map(b.from), x.map(b.to));
            let _ = write!(
                s,
                r#"<rect class="bar" clip-path="url(#{clip})" x="{xa:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                (xb - xa).max(1.0),
                row_h * 0.6,
                b.color,
                esc(&b.label)
            );
        }
        for m in &self.markers {
            let px = x.map(m.x);
            let _ = write!(
                s,
                r#"<line class="marker" x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{bottom}" stroke="{}" stroke-dasharray="4 3"><title>{}</title></line>"#,
                m.color,
                esc(&m.label)
            );
        }
        let _ = write!(
            s,
            r##"<line class="axis" x1="{L}" y1="{T}" x2="{L}" y2="{bottom}" stroke="#333"/>"##
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A small stable hash for ids.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(fmt_num(-0.0), "0");
        assert_eq!(fmt_num(-1e-12), "0");
        assert_eq!(
            ticks(0.0, 97.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(ticks(2.0, 106.0, 8).first(), Some(&0.0));
        // The last tick is never below the highest value (211 on a 50-step axis: 250).
        assert_eq!(ticks(0.0, 211.0, 5).last(), Some(&250.0));
        assert_eq!(ticks(0.0, 200.0, 5).last(), Some(&200.0));
        assert_eq!(fmt_num(0.213), "0.213", "sub-millisecond values keep µs");
    }

    #[test]
    fn renders_axes_series_legend_markers_and_escapes() {
        let mut c = Chart {
            title: "p95 <ms>".into(),
            x_label: "users".into(),
            y_label: "ms".into(),
            y2_label: "connections".into(),
            ..Default::default()
        };
        c.series.push(Series {
            errors: Some(vec![1.0, 2.0]),
            dots: true,
            ..Series::line("verify", vec![(2.0, 10.0), (10.0, 30.0)])
        });
        c.series
            .push(Series::steps_right("db", vec![(2.0, 5.0), (6.0, 7.0)], 4.0));
        c.markers.push(Marker {
            x: 5.0,
            label: "i-1 InService".into(),
            color: "#000",
        });
        let svg = c.to_svg();
        assert!(svg.contains("p95 &lt;ms&gt;"));
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert_eq!(svg.matches(r#"class="ci""#).count(), 2);
        assert!(svg.contains("i-1 InService") && svg.contains("db (right axis)"));
        assert!(svg.contains(r#"data-series="2""#));
        assert_eq!(
            svg.matches(r#"data-kind="series""#).count(),
            2,
            "two series"
        );
        assert_eq!(
            svg.matches(r#"class="legend-item""#).count(),
            3,
            "and a marker kind"
        );
        assert_eq!(
            svg.matches(r#"class="pt""#).count(),
            4,
            "every point hoverable"
        );
    }

    #[test]
    fn a_long_legend_wraps_onto_more_rows() {
        let labels: Vec<String> = (0..12)
            .map(|i| format!("POST /challenge-response/v1/[SESSION_ID] #{i}"))
            .collect();
        let (pos, rows) = legend_layout(&labels);
        assert!(rows >= 6, "{rows}");
        assert!(pos.iter().all(|(x, _)| *x < W), "{pos:?}");
        assert!(spans_decades([0.2, 30.0]) && !spans_decades([10.0, 300.0]));
    }
}
