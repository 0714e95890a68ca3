//! Small, dependency-free SVG charts: lines and points on one or two y axes, 95 % confidence
//! bars, vertical markers (instance launch, InService, healthy) and shaded spans (warm-up).
//! Self-contained text, so a report opens anywhere without network access or fonts to fetch.

use std::fmt::Write as _;

/// Which y axis a series uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Left.
    Left,
    /// Right (a second unit, e.g. DB connections beside latency).
    Right,
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
    /// Draw markers at points (summary charts) as well as the line.
    pub dots: bool,
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

/// A chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Left axis label.
    pub y_label: String,
    /// Right axis label (only drawn when a series uses it).
    pub y2_label: String,
    /// Series.
    pub series: Vec<Series>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
    /// Shaded x spans (start, end, label).
    pub spans: Vec<(f64, f64, String)>,
}

/// The palette (colour-blind friendly, distinct on screen and in screenshots).
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const W: f64 = 700.0;
const H: f64 = 300.0;
const L: f64 = 64.0;
const R: f64 = 64.0;
const T: f64 = 34.0;
const B: f64 = 70.0;

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
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut v = start;
    while v <= hi + step * 0.5 {
        out.push((v * 1e9).round() / 1e9);
        v += step;
    }
    out
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 10000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
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
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        if self.hi > self.lo {
            self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)
        } else {
            (self.a + self.b) / 2.0
        }
    }
}

fn y_range(series: &[&Series]) -> (f64, f64) {
    let mut hi = f64::MIN;
    for s in series {
        for (i, (_, y)) in s.points.iter().enumerate() {
            let e = s
                .errors
                .as_ref()
                .and_then(|e| e.get(i))
                .copied()
                .unwrap_or(0.0);
            hi = hi.max(y + e);
        }
    }
    if hi == f64::MIN || hi <= 0.0 {
        hi = 1.0;
    }
    let t = ticks(0.0, hi, 5);
    (0.0, *t.last().unwrap_or(&hi))
}

impl Chart {
    /// True when there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }

    /// Renders the chart as an `<svg>` element.
    pub fn to_svg(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
            esc(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>"##
        );
        let _ = write!(
            s,
            r##"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
            W / 2.0,
            esc(&self.title)
        );
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.markers.iter().map(|m| m.x))
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
        let x = Scale {
            lo: xt[0].min(xlo),
            hi: (*xt.last().unwrap()).max(xhi),
            a: L,
            b: W - R,
        };
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
        let (l0, l1) = y_range(&left);
        let y = Scale {
            lo: l0,
            hi: l1,
            a: H - B,
            b: T,
        };
        let (r0, r1) = y_range(&right);
        let y2 = Scale {
            lo: r0,
            hi: r1,
            a: H - B,
            b: T,
        };
        // Spans and grid.
        for (a, b, label) in &self.spans {
            let (xa, xb) = (x.map(*a), x.map(*b));
            let _ = write!(
                s,
                r##"<rect class="span" x="{xa:.1}" y="{T}" width="{:.1}" height="{:.1}" fill="#f3f0e0"><title>{}</title></rect>"##,
                (xb - xa).max(0.0),
                H - B - T,
                esc(label)
            );
        }
        for t in ticks(l0, l1, 5) {
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
        for t in &xt {
            let px = x.map(*t);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#333"/><text x="{px:.1}" y="{}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
                H - B,
                H - B + 5.0,
                H - B + 18.0,
                fmt_num(*t)
            );
        }
        if !right.is_empty() {
            for t in ticks(r0, r1, 5) {
                let py = y2.map(t);
                let _ = write!(
                    s,
                    r##"<text x="{}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
                    W - R + 6.0,
                    py + 4.0,
                    fmt_num(t)
                );
            }
            let _ = write!(
                s,
                r##"<line class="axis" x1="{}" y1="{T}" x2="{}" y2="{}" stroke="#333"/>"##,
                W - R,
                W - R,
                H - B
            );
            let _ = write!(
                s,
                r##"<text transform="translate({},{}) rotate(90)" text-anchor="middle" font-size="12" fill="#555">{}</text>"##,
                W - 14.0,
                (H - B + T) / 2.0,
                esc(&self.y2_label)
            );
        }
        // Axes.
        let _ = write!(
            s,
            r##"<line class="axis" x1="{L}" y1="{}" x2="{}" y2="{}" stroke="#333"/><line class="axis" x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="#333"/>"##,
            H - B,
            W - R,
            H - B,
            H - B
        );
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
            (L + W - R) / 2.0,
            H - B + 36.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r##"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle" font-size="12" fill="#333">{}</text>"##,
            (H - B + T) / 2.0,
            esc(&self.y_label)
        );
        // Markers.
        for m in &self.markers {
            let px = x.map(m.x);
            let _ = write!(
                s,
                r#"<line class="marker" x1="{px:.1}" y1="{T}" x2="{px:.1}" y2="{}" stroke="{}" stroke-dasharray="4 3"><title>{}</title></line>"#,
                H - B,
                m.color,
                esc(&m.label)
            );
        }
        // Series.
        for (i, se) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let ys = if se.axis == Axis::Left { &y } else { &y2 };
            if se.points.is_empty() {
                continue;
            }
            let path: Vec<String> = se
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", x.map(*px), ys.map(*py)))
                .collect();
            let dash = if se.axis == Axis::Right {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<polyline class="series" fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                path.join(" "),
                esc(&se.name)
            );
            if let Some(errs) = &se.errors {
                for ((px, py), e) in se.points.iter().zip(errs) {
                    let (cx, top, bot) = (x.map(*px), ys.map(py + e), ys.map((py - e).max(0.0)));
                    let _ = write!(
                        s,
                        r#"<path class="ci" d="M{cx:.1},{top:.1}V{bot:.1}M{:.1},{top:.1}h8M{:.1},{bot:.1}h8" stroke="{color}" fill="none"/>"#,
                        cx - 4.0,
                        cx - 4.0
                    );
                }
            }
            if se.dots || se.points.len() == 1 {
                for (px, py) in &se.points {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                        x.map(*px),
                        ys.map(*py)
                    );
                }
            }
        }
        // Legend.
        let mut lx = L;
        let ly = H - 14.0;
        for (i, se) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let label = if se.axis == Axis::Right {
                format!("{} (right)", se.name)
            } else {
                se.name.clone()
            };
            let _ = write!(
                s,
                r##"<rect x="{lx:.1}" y="{}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{}" font-size="11" fill="#222">{}</text>"##,
                ly - 4.0,
                lx + 18.0,
                ly + 1.0,
                esc(&label)
            );
            lx += 26.0 + 6.5 * label.chars().count() as f64;
        }
        s.push_str("</svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 97.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert_eq!(ticks(2.0, 106.0, 8).first(), Some(&0.0));
    }

    #[test]
    fn renders_axes_series_markers_and_escapes() {
        let mut c = Chart {
            title: "p95 <ms>".into(),
            x_label: "users".into(),
            y_label: "ms".into(),
            ..Default::default()
        };
        c.series.push(Series {
            errors: Some(vec![1.0, 2.0]),
            dots: true,
            ..Series::line("verify", vec![(2.0, 10.0), (10.0, 30.0)])
        });
        c.series.push(Series {
            axis: Axis::Right,
            ..Series::line("db", vec![(2.0, 5.0)])
        });
        c.markers.push(Marker {
            x: 5.0,
            label: "i-1 InService".into(),
            color: "#000",
        });
        let svg = c.to_svg();
        assert!(svg.contains("p95 &lt;ms&gt;"));
        assert_eq!(svg.matches(r#"class="series""#).count(), 2);
        assert_eq!(svg.matches(r#"class="ci""#).count(), 2);
        assert!(svg.contains("i-1 InService") && svg.contains("db (right)"));
    }
}
