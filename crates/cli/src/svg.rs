/*!
Small SVG line charts for the experiments (no plotting dependency).

One function draws series of points on linear or log axes, with ticks,
a legend and optional horizontal or diagonal reference lines. The output is
deterministic text, so a plot is reproducible and diffable.
*/

use std::fmt::Write;

pub(crate) struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub(crate) struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_log: bool,
    pub y_log: bool,
    /// Horizontal reference lines: (y, label).
    pub hlines: Vec<(f64, String)>,
    /// Draw y = x (for calibration plots).
    pub diagonal: bool,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

fn tr(v: f64, log: bool) -> f64 {
    if log { v.max(1e-300).log10() } else { v }
}

fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        (lo.floor() as i64..=hi.ceil() as i64)
            .map(|e| e as f64)
            .collect()
    } else {
        let span = (hi - lo).max(1e-12);
        let step = 10f64.powf(span.log10().floor());
        let step = if span / step < 3.0 { step / 2.0 } else { step };
        let mut v = Vec::new();
        let mut t = (lo / step).floor() * step;
        while t <= hi + 1e-9 {
            v.push(t);
            t += step;
        }
        v
    }
}

fn label(v: f64, log: bool) -> String {
    if log {
        format!("1e{}", v as i64)
    } else if v.fract().abs() < 1e-9 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn line_chart(c: &Chart, series: &[Series]) -> String {
    let (w, h, l, r, t, b) = (800.0, 440.0, 80.0, 280.0, 40.0, 60.0);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|&(x, y)| (tr(x, c.x_log), tr(y, c.y_log)))
        })
        .chain(c.hlines.iter().map(|(y, _)| (f64::NAN, tr(*y, c.y_log))))
        .collect();
    let xs: Vec<f64> = pts.iter().map(|p| p.0).filter(|x| x.is_finite()).collect();
    let ys: Vec<f64> = pts.iter().map(|p| p.1).filter(|y| y.is_finite()).collect();
    let (mut x0, mut x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (mut y0, mut y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if c.x_log {
        (x0, x1) = (x0.floor(), x1.ceil());
    }
    if c.y_log {
        (y0, y1) = (y0.floor(), y1.ceil());
    } else {
        y0 = y0.min(0.0);
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    if y1 - y0 < 1e-12 {
        y1 = y0 + 1.0;
    }
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| h - b - (y - y0) / (y1 - y0) * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (w - r + l) / 2.0,
        esc(c.title)
    );
    for x in ticks(x0, x1, c.x_log) {
        let xp = px(x);
        let _ = writeln!(
            s,
            r##"<line x1="{xp:.1}" y1="{:.1}" x2="{xp:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xp:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            t,
            h - b,
            h - b + 16.0,
            label(x, c.x_log)
        );
    }
    for y in ticks(y0, y1, c.y_log) {
        let yp = py(y);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yp:.1}" x2="{:.1}" y2="{yp:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            yp + 4.0,
            label(y, c.y_log)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{:.1}" height="{:.1}" fill="none" stroke="#333"/>"##,
        w - l - r,
        h - t - b
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (w - r + l) / 2.0,
        h - 18.0,
        esc(c.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (h - b + t) / 2.0,
        esc(c.y_label)
    );
    if c.diagonal {
        let (a, z) = (x0.max(y0), x1.min(y1));
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="5,4"/>"##,
            px(a),
            py(a),
            px(z),
            py(z)
        );
    }
    for (y, name) in &c.hlines {
        let yp = py(tr(*y, c.y_log));
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yp:.1}" x2="{:.1}" y2="{yp:.1}" stroke="#999" stroke-dasharray="5,4"/><text x="{:.1}" y="{:.1}" fill="#666">{}</text>"##,
            w - r,
            w - r + 6.0,
            yp + 4.0,
            esc(name)
        );
    }
    for (i, se) in series.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(tr(x, c.x_log)), py(tr(y, c.y_log))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for p in &path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{col}"/>"#);
        }
        let ly = t + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{col}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_series_ticks_and_references() {
        let c = Chart {
            title: "t <&>",
            x_label: "x",
            y_label: "y",
            x_log: true,
            y_log: false,
            hlines: vec![(99.0, "99%".into())],
            diagonal: false,
        };
        let s = line_chart(
            &c,
            &[
                Series {
                    name: "a".into(),
                    points: vec![(25.0, 10.0), (400.0, 100.0)],
                },
                Series {
                    name: "b".into(),
                    points: vec![(25.0, 0.0), (400.0, 50.0)],
                },
            ],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert_eq!(s.matches("<circle").count(), 4);
        assert!(s.contains(">1e1<") && s.contains(">1e3<"));
        assert!(s.contains("t &lt;&amp;&gt;"));
        assert!(s.contains(">99%<"));
        // Same input, same bytes.
        assert_eq!(
            s,
            line_chart(
                &c,
                &[
                    Series {
                        name: "a".into(),
                        points: vec![(25.0, 10.0), (400.0, 100.0)]
                    },
                    Series {
                        name: "b".into(),
                        points: vec![(25.0, 0.0), (400.0, 50.0)]
                    },
                ]
            )
        );
    }
}
