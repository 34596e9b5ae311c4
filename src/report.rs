//! `tokex report`: latency percentile plots and tables from `.hgrm` files.
//!
//! Owns reading the HdrHistogram percentile text that `latency.rs` writes,
//! the PNG plot (percentile on HdrHistogram's log scale, 1/(1-p), one line
//! per run) and the markdown table. Reads files, writes files; no trading.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use plotters::prelude::*;

use crate::latency::fmt_ns;

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// `.hgrm` files, or directories holding them.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The PNG plot to write.
    #[arg(long, default_value = "out/latency.png")]
    pub out: PathBuf,
    /// Also write the table as markdown here.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long, default_value = "tokex latency by percentile")]
    pub title: String,
}

/// One run: its label and (percentile 0..1, value in ns) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub count: u64,
    /// What became of the orders, when the load's `.json` sits beside the
    /// `.hgrm` (the percentiles are of the answered ones only).
    pub outcome: Option<Outcome>,
}

/// Orders sent, lost (never answered) and never sent, from a load run's
/// one-line JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Outcome {
    pub sent: u64,
    pub lost: u64,
    pub unsent: u64,
}

impl Outcome {
    /// Reads the outcome from a load run's JSON (`None` for JSON without
    /// it: the exchange's stages, or runs from before it was written).
    pub fn from_json(text: &str) -> Option<Outcome> {
        serde_json::from_str(text).ok()
    }
}

impl Run {
    /// The value at percentile `p` (0..1): the first point at or above it.
    pub fn at(&self, p: f64) -> f64 {
        self.points
            .iter()
            .find(|(q, _)| *q >= p)
            .or(self.points.last())
            .map_or(0.0, |x| x.1)
    }
}

/// Parses HdrHistogram percentile text (values in microseconds).
pub fn parse_hgrm(label: &str, text: &str) -> anyhow::Result<Run> {
    let mut points = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 3 || line.starts_with('#') {
            continue;
        }
        let (Ok(v), Ok(p), Ok(n)) = (
            cols[0].parse::<f64>(),
            cols[1].parse::<f64>(),
            cols[2].parse::<u64>(),
        ) else {
            continue;
        };
        // Microseconds with three decimals: whole nanoseconds (1.001 us
        // is 1,001 ns; a bare `* 1000.0` gives 1000.999... and truncates).
        points.push((p, (v * 1000.0).round()));
        count = n;
    }
    if points.is_empty() {
        bail!("{label}: no percentile lines (not an .hgrm file?)");
    }
    Ok(Run {
        label: label.to_string(),
        points,
        count,
        outcome: None,
    })
}

fn collect(inputs: &[PathBuf]) -> anyhow::Result<Vec<Run>> {
    let mut files = Vec::new();
    for i in inputs {
        if i.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(i)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hgrm"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(i.clone());
        }
    }
    if files.is_empty() {
        bail!(
            "no .hgrm files in {}: a bench keeps each run in a directory of its own (pass those, e.g. DIR/*/roundtrip.hgrm)",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    files
        .iter()
        .zip(labels(&files))
        .map(|(f, label)| {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let mut run = parse_hgrm(&label, &text)?;
            run.outcome = std::fs::read_to_string(f.with_extension("json"))
                .ok()
                .and_then(|j| Outcome::from_json(&j));
            Ok(run)
        })
        .collect()
}

/// A label per file: its name without `.hgrm`, or, where two files share a
/// name (every bench run writes `roundtrip.hgrm` in its own directory),
/// `directory/name` for those.
fn labels(files: &[PathBuf]) -> Vec<String> {
    let stem = |f: &PathBuf| {
        f.file_stem()
            .map_or("run".into(), |s| s.to_string_lossy().to_string())
    };
    let stems: Vec<String> = files.iter().map(stem).collect();
    files
        .iter()
        .zip(&stems)
        .map(|(f, s)| {
            let shared = stems.iter().filter(|o| *o == s).count() > 1;
            match f.parent().and_then(|d| d.file_name()) {
                Some(dir) if shared => format!("{}/{s}", dir.to_string_lossy()),
                _ => s.clone(),
            }
        })
        .collect()
}

/// The markdown table of the runs.
pub fn markdown(runs: &[Run]) -> String {
    let mut s = String::from("| run | count | sent | lost | not sent | p50 | p90 | p99 | p99.9 | p99.99 | max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in runs {
        let f = |p: f64| fmt_ns(r.at(p) as u64);
        let (sent, lost, unsent) = r.outcome.map_or(("-".into(), "-".into(), "-".into()), |o| {
            (o.sent.to_string(), o.lost.to_string(), o.unsent.to_string())
        });
        s += &format!(
            "| {} | {} | {sent} | {lost} | {unsent} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            r.count,
            f(0.5),
            f(0.9),
            f(0.99),
            f(0.999),
            f(0.9999),
            f(1.0)
        );
    }
    s
}

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> anyhow::Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!("{FONT} is missing: run tools/install-deps.sh (fonts-dejavu-core)")
    })?;
    // Registered once per process; plotters keeps a 'static reference.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))
}

/// 1/(1-p), capped so that p = 1 (the maximum) plots at the right edge.
fn x_of(p: f64, cap: f64) -> f64 {
    (1.0 / (1.0 - p).max(1.0 / cap)).max(1.0)
}

/// Draws the percentile plot of `runs` into `png`.
pub fn plot(runs: &[Run], png: &Path, title: &str) -> anyhow::Result<()> {
    register_font()?;
    let cap = 1e6;
    let ymax = runs
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 2.0;
    // The axis starts below the 10th percentile of the fastest run: a
    // single odd minimum must not squash the plot (it is clamped instead).
    let ymin = runs
        .iter()
        .flat_map(|r| r.points.iter().filter(|p| p.0 >= 0.1).map(|p| p.1))
        .fold(f64::MAX, f64::min)
        .clamp(1.0, f64::MAX / 4.0)
        / 2.0;
    let root = BitMapBackend::new(png, (1200, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 28))
        .margin(20)
        // Room on the right for the last percentile's label (99.9999%).
        .margin_right(50)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d((1.0..cap).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_label_formatter(&|x: &f64| {
            let nines = x.log10().round() as i32;
            match nines {
                0 => "0%".into(),
                1 => "90%".into(),
                2 => "99%".into(),
                n => format!("99.{}%", "9".repeat((n - 2) as usize)),
            }
        })
        .y_label_formatter(&|y| fmt_ns(*y as u64))
        .label_style(("sans-serif", 16))
        .draw()?;
    // Twelve distinguishable colours: a `tokex bench transport` run has
    // nine lines (three variants at three rates).
    let colors = [
        BLUE,
        RED,
        GREEN,
        MAGENTA,
        CYAN,
        BLACK,
        RGBColor(255, 140, 0),
        RGBColor(128, 0, 128),
        RGBColor(0, 128, 128),
        RGBColor(128, 128, 0),
        RGBColor(139, 69, 19),
        RGBColor(255, 20, 147),
    ];
    for (i, r) in runs.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                r.points.iter().map(|&(p, v)| (x_of(p, cap), v.max(ymin))),
                c.stroke_width(2),
            ))?
            .label(match r.outcome {
                Some(o) if o.lost + o.unsent > 0 => format!(
                    "{} (n={}; {} lost, {} not sent: not in the curve)",
                    r.label, r.count, o.lost, o.unsent
                ),
                _ => format!("{} (n={})", r.label, r.count),
            })
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", png.display()))?;
    Ok(())
}

/// Plots `.hgrm` files side by side into `png`; returns the markdown table.
pub fn plot_files(files: &[PathBuf], png: &Path, title: &str) -> anyhow::Result<String> {
    let runs = collect(files)?;
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir)?;
    }
    plot(&runs, png, title)?;
    Ok(markdown(&runs))
}

/// `tokex report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let table = plot_files(&args.inputs, &args.out, &args.title)?;
    print!("{table}");
    println!("plot: {}", args.out.display());
    if let Some(md) = &args.markdown {
        std::fs::write(md, &table)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyHistogram;

    fn sample(scale: u64) -> Run {
        let mut h = LatencyHistogram::new();
        for i in 1..=100_000u64 {
            h.record(i * scale % 1_000_000 + 1_000);
        }
        let mut buf = Vec::new();
        h.write_hgrm(&mut buf).unwrap();
        parse_hgrm("t", &String::from_utf8(buf).unwrap()).unwrap()
    }

    #[test]
    fn hgrm_written_by_latency_reads_back_to_the_same_percentiles() {
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let mut buf = Vec::new();
        h.write_hgrm(&mut buf).unwrap();
        let run = parse_hgrm("x", &String::from_utf8(buf).unwrap()).unwrap();
        assert_eq!(run.count, 10_000);
        let p50 = run.at(0.5);
        assert!((4_990_000.0..=5_010_000.0).contains(&p50), "{p50}");
        assert!(run.at(1.0) >= 9_990_000.0);
    }

    #[test]
    fn hgrm_lines_at_the_summary_levels_read_back_exactly_as_the_summary() {
        // A heavy tail of 40,000 values (the size of a `--quick` run):
        // between HdrHistogram's own levels the value jumps.
        let mut h = LatencyHistogram::new();
        for i in 0..40_000u64 {
            h.record(if i % 97 == 0 {
                1_000_000 + i * 500
            } else {
                10_000 + i
            });
        }
        let mut buf = Vec::new();
        h.write_hgrm(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let run = parse_hgrm("x", &text).unwrap();
        let s = h.summary(0.0);
        let got = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0].map(|p| run.at(p) as u64);
        assert_eq!(
            got,
            [s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns, s.p9999_ns, s.max_ns],
            "{text}"
        );
        // Still in order for HdrHistogram's plotters.
        let bad: Vec<_> = run
            .points
            .windows(2)
            .filter(|w| !(w[0].0 < w[1].0 && w[0].1 <= w[1].1))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn files_of_the_same_name_are_labelled_by_their_directories() {
        let files: Vec<PathBuf> = [
            "out/xdp-10k/roundtrip.hgrm",
            "out/udp-10k/roundtrip.hgrm",
            "out/load.hgrm",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(
            labels(&files),
            ["xdp-10k/roundtrip", "udp-10k/roundtrip", "load"]
        );
    }

    #[test]
    fn a_directory_without_hgrm_files_is_an_error_that_says_where_runs_are() {
        let dir = crate::test_dir::TempDir::new("report-empty");
        let e = collect(&[dir.join("")]).unwrap_err().to_string();
        assert!(e.contains("no .hgrm files"), "{e}");
    }

    #[test]
    fn markdown_has_a_row_per_run() {
        let t = markdown(&[sample(7), sample(13)]);
        assert_eq!(t.lines().count(), 4);
        assert!(t
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("| t | 100000 | - | - | - |"));
    }

    #[test]
    fn a_load_runs_lost_and_unsent_orders_are_read_from_its_json_beside_the_hgrm() {
        let dir = crate::test_dir::TempDir::new("report-outcome");
        let mut h = LatencyHistogram::new();
        h.record(5_000);
        h.save_hgrm(&dir.join("load.hgrm")).unwrap();
        h.save_hgrm(&dir.join("end_to_end.hgrm")).unwrap();
        std::fs::write(
            dir.join("load.json"),
            r#"{"label":"load","intended_rate":1000,"planned":1000,"sent":990,"lost":20,"unsent":10,"p50_ns":5000,"p90_ns":5000,"p99_ns":5000,"p999_ns":5000,"p9999_ns":5000,"max_ns":5000,"count":970,"rate":990.0}"#,
        )
        .unwrap();
        let runs = collect(&[dir.join("")]).unwrap();
        assert_eq!(runs.len(), 2);
        let load = runs.iter().find(|r| r.label == "load").unwrap();
        assert_eq!(
            load.outcome,
            Some(Outcome {
                sent: 990,
                lost: 20,
                unsent: 10
            })
        );
        assert_eq!(
            runs.iter()
                .find(|r| r.label == "end_to_end")
                .unwrap()
                .outcome,
            None
        );
        let t = markdown(&runs);
        assert!(t.contains("| load | 1 | 990 | 20 | 10 |"), "{t}");
    }

    #[test]
    fn plot_writes_a_png_of_the_requested_size() {
        if !Path::new(FONT).exists() {
            panic!("{FONT} missing: tools/install-deps.sh installs fonts-dejavu-core");
        }
        let dir = crate::test_dir::TempDir::new("plot");
        let png = dir.join("p.png");
        let mut a = sample(7);
        a.label = "kernel udp".into();
        plot(&[a, sample(3)], &png, "test").unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        // IHDR width and height.
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1200);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 700);
        assert!(bytes.len() > 10_000);
    }
}
